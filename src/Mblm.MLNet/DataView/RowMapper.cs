using Microsoft.ML;
using Microsoft.ML.Data;

namespace Mblm.MLNet.DataView;

/// <summary>Row-at-a-time mapping (PredictionEngine, composed mappers): the model runs once per row position, on demand.</summary>
internal sealed class RowMapper<TIn, TOut>(Bindings<TIn, TOut> bindings) : IRowToRowMapper
{
    public DataViewSchema InputSchema => bindings.Input;

    public DataViewSchema OutputSchema => bindings.Output;

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        var result = new SortedDictionary<int, DataViewSchema.Column>();
        foreach (var c in dependingColumns)
        {
            if (bindings.AddedAt(c.Index) < 0) result[c.Index] = bindings.Input[c.Index];
            else foreach (var s in bindings.Sources) result[s.Index] = s;
        }
        return result.Values;
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns)
    {
        var active = new bool[bindings.Output.Count];
        foreach (var c in activeColumns) active[c.Index] = true;
        return new Row(bindings, input, active);
    }

    private sealed class Row : DataViewRow
    {
        private readonly Bindings<TIn, TOut> _b;
        private readonly DataViewRow _input;
        private readonly bool[] _active;
        private readonly bool[] _needs;
        private readonly Func<TIn>? _read;
        private long _cachedPosition = -1;
        private TOut _cached = default!;

        public Row(Bindings<TIn, TOut> b, DataViewRow input, bool[] active)
        {
            _b = b;
            _input = input;
            _active = active;
            _needs = b.ActiveAdded(i => active[i]);
            if (_needs.Any(x => x)) _read = b.Stage.Reader(input, b.Sources);
        }

        public override DataViewSchema Schema => _b.Output;
        public override long Position => _input.Position;
        public override long Batch => _input.Batch;

        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) => _active[column.Index];

        private TOut Current()
        {
            if (_cachedPosition != _input.Position || _input.Position < 0)
            {
                _cached = _b.Stage.Compute([_read!()], _needs)[0];
                _cachedPosition = _input.Position;
            }
            return _cached;
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!_active[column.Index]) throw new InvalidOperationException($"column '{column.Name}' is not active in this row");
            int added = _b.AddedAt(column.Index);
            return added >= 0 ? _b.Getter<TValue>(added, Current) : _input.GetGetter<TValue>(_b.Input[column.Index]);
        }
    }
}
