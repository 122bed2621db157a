using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet.DataView;

/// <summary>
/// The lazily scored view that an MBLM transformer's <c>Transform</c> returns. A cursor reads the source
/// column a batch of rows ahead (with a second input cursor), scores the batch in one model call, and serves the rows while
/// the first input cursor supplies the passed-through columns in step. Only the outputs of active columns are computed.
/// </summary>
internal sealed class ScoredDataView<TIn, TOut> : IDataView
{
    private readonly IDataView _input;
    private readonly Bindings<TIn, TOut> _bindings;

    public ScoredDataView(IRowStage<TIn, TOut> stage, IDataView input)
    {
        _input = input;
        _bindings = new Bindings<TIn, TOut>(stage, input.Schema);
    }

    public bool CanShuffle => false;

    public DataViewSchema Schema => _bindings.Output;

    public long? GetRowCount() => _input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var active = new bool[Schema.Count];
        foreach (var c in columnsNeeded) active[c.Index] = true;
        var needs = _bindings.ActiveAdded(i => active[i]);
        var inputColumns = Enumerable.Range(0, _bindings.Input.Count).Where(i => active[i]).Select(i => _bindings.Input[i]).ToList();
        var pass = _input.GetRowCursor(inputColumns);
        var ahead = needs.Any(x => x) ? _input.GetRowCursor(_bindings.Sources) : null;
        return new Cursor(_bindings, pass, ahead, active, needs);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly Bindings<TIn, TOut> _b;
        private readonly DataViewRowCursor _pass;
        private readonly DataViewRowCursor? _ahead;
        private readonly Func<TIn>? _read;
        private readonly bool[] _active;
        private readonly bool[] _needs;
        private readonly Queue<TOut> _ready = new();
        private TOut _current = default!;

        public Cursor(Bindings<TIn, TOut> b, DataViewRowCursor pass, DataViewRowCursor? ahead, bool[] active, bool[] needs)
        {
            _b = b;
            _pass = pass;
            _ahead = ahead;
            _read = ahead is null ? null : b.Stage.Reader(ahead, b.Sources);
            _active = active;
            _needs = needs;
        }

        public override DataViewSchema Schema => _b.Output;
        public override long Position => _pass.Position;
        public override long Batch => _pass.Batch;

        public override ValueGetter<DataViewRowId> GetIdGetter() => _pass.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) => _active[column.Index];

        public override bool MoveNext()
        {
            if (!_pass.MoveNext()) return false;
            if (_ahead is null) return true;
            if (_ready.Count == 0)
            {
                (_b.Stage as ICancelableStage)?.ThrowIfCanceled(); // a cancelled MLContext stops Transform between batches
                var rows = new List<TIn>();
                while (rows.Count < _b.Stage.BatchSize && _ahead.MoveNext()) rows.Add(_read!());
                if (rows.Count == 0)
                    throw new InvalidOperationException("the input data view returned fewer rows on a second cursor; MBLM batching needs a deterministic input");
                foreach (var r in _b.Stage.Compute(rows, _needs)) _ready.Enqueue(r);
            }
            _current = _ready.Dequeue();
            return true;
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!_active[column.Index]) throw new InvalidOperationException($"column '{column.Name}' is not active in this cursor");
            int added = _b.AddedAt(column.Index);
            return added >= 0 ? _b.Getter<TValue>(added, () => _current) : _pass.GetGetter<TValue>(_b.Input[column.Index]);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _pass.Dispose();
                _ahead?.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
