using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet;

/// <summary>
/// The lazily scored view that <see cref="MblmLanguageModelTransformer.Transform"/> returns. A cursor reads the source
/// column a batch of rows ahead (with a second input cursor), scores the batch in one model call, and serves the rows while
/// the first input cursor supplies the passed-through columns in step. Only the outputs of active columns are computed.
/// </summary>
internal sealed class ScoredDataView : IDataView
{
    private readonly IDataView _input;
    private readonly Bindings _bindings;

    public ScoredDataView(MblmLanguageModelTransformer parent, IDataView input)
    {
        _input = input;
        _bindings = new Bindings(parent, input.Schema);
    }

    public bool CanShuffle => false;

    public DataViewSchema Schema => _bindings.Output;

    public long? GetRowCount() => _input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var active = new bool[Schema.Count];
        foreach (var c in columnsNeeded) active[c.Index] = true;
        var needs = _bindings.Needs(i => active[i]);
        bool any = needs.Scores || needs.Features || needs.Completion;
        var inputColumns = Enumerable.Range(0, _bindings.Input.Count).Where(i => active[i]).Select(i => _bindings.Input[i]).ToList();
        var pass = _input.GetRowCursor(inputColumns);
        var ahead = any ? _input.GetRowCursor(new[] { _bindings.Source }) : null;
        return new Cursor(_bindings, pass, ahead, active, needs);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly Bindings _b;
        private readonly DataViewRowCursor _pass;
        private readonly DataViewRowCursor? _ahead;
        private readonly Func<byte[]>? _read;
        private readonly bool[] _active;
        private readonly (bool Scores, bool Features, bool Completion) _needs;
        private readonly Queue<RowResult> _ready = new();
        private RowResult _current;

        public Cursor(Bindings b, DataViewRowCursor pass, DataViewRowCursor? ahead, bool[] active, (bool, bool, bool) needs)
        {
            _b = b;
            _pass = pass;
            _ahead = ahead;
            _read = ahead is null ? null : ByteColumn.Reader(ahead, b.Source);
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
                var rows = new List<byte[]>();
                while (rows.Count < _b.Parent.Options.ScoringBatchSize && _ahead.MoveNext()) rows.Add(_read!());
                if (rows.Count == 0)
                    throw new InvalidOperationException("the input data view returned fewer rows on a second cursor; MBLM batching needs a deterministic input");
                foreach (var r in _b.Parent.Compute(rows, _needs.Scores, _needs.Features, _needs.Completion)) _ready.Enqueue(r);
            }
            _current = _ready.Dequeue();
            return true;
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!_active[column.Index]) throw new InvalidOperationException($"column '{column.Name}' is not active in this cursor");
            return _b.AddedAt(column.Index) is { } added
                ? (ValueGetter<TValue>)_b.Getter<TValue>(added, () => _current)
                : _pass.GetGetter<TValue>(_b.Input[column.Index]);
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

/// <summary>Row-at-a-time mapping (PredictionEngine, composed mappers): the model runs once per row position, on demand.</summary>
internal sealed class RowMapper(MblmLanguageModelTransformer parent, Bindings bindings) : IRowToRowMapper
{
    public DataViewSchema InputSchema => bindings.Input;

    public DataViewSchema OutputSchema => bindings.Output;

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        var result = new SortedDictionary<int, DataViewSchema.Column>();
        foreach (var c in dependingColumns)
        {
            if (bindings.AddedAt(c.Index) is null) result[c.Index] = bindings.Input[c.Index];
            else result[bindings.Source.Index] = bindings.Source;
        }
        return result.Values;
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
    {
        var active = new bool[bindings.Output.Count];
        foreach (var c in activeColumns) active[c.Index] = true;
        return new Row(parent, bindings, input, active);
    }

    private sealed class Row : DataViewRow
    {
        private readonly MblmLanguageModelTransformer _parent;
        private readonly Bindings _b;
        private readonly DataViewRow _input;
        private readonly bool[] _active;
        private readonly (bool Scores, bool Features, bool Completion) _needs;
        private readonly Func<byte[]>? _read;
        private long _cachedPosition = -1;
        private RowResult _cached;

        public Row(MblmLanguageModelTransformer parent, Bindings b, DataViewRow input, bool[] active)
        {
            _parent = parent;
            _b = b;
            _input = input;
            _active = active;
            _needs = b.Needs(i => active[i]);
            if (_needs.Scores || _needs.Features || _needs.Completion) _read = ByteColumn.Reader(input, b.Source);
        }

        public override DataViewSchema Schema => _b.Output;
        public override long Position => _input.Position;
        public override long Batch => _input.Batch;

        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) => _active[column.Index];

        private RowResult Current()
        {
            if (_cachedPosition != _input.Position || _input.Position < 0)
            {
                _cached = _parent.Compute([_read!()], _needs.Scores, _needs.Features, _needs.Completion)[0];
                _cachedPosition = _input.Position;
            }
            return _cached;
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!_active[column.Index]) throw new InvalidOperationException($"column '{column.Name}' is not active in this row");
            return _b.AddedAt(column.Index) is { } added
                ? (ValueGetter<TValue>)_b.Getter<TValue>(added, Current)
                : _input.GetGetter<TValue>(_b.Input[column.Index]);
        }
    }
}
