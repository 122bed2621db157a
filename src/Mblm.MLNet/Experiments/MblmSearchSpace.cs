using System.Globalization;
using System.Reflection;
using Mblm.Config;

namespace Mblm.MLNet.Experiments;

/// <summary>One dimension of a search space: a numeric range or a list of choices.</summary>
/// <param name="Name">An option of the estimator's options record (e.g. <c>LearningRate</c>) or a shape key of <see cref="MblmShape"/>.</param>
/// <param name="Min">Lower end of a range.</param>
/// <param name="Max">Upper end of a range.</param>
/// <param name="LogScale">Whether a range is searched on a log scale.</param>
/// <param name="Choices">The values of a choice dimension (null for a range).</param>
public sealed record SearchDimension(string Name, double Min, double Max, bool LogScale, IReadOnlyList<object>? Choices)
{
    /// <summary>A value drawn uniformly (log-uniformly) from the range, or one of the choices.</summary>
    internal object Draw(Random rng)
    {
        if (Choices is { } c) return c[rng.Next(c.Count)];
        double u = rng.NextDouble();
        return LogScale ? Math.Exp(Math.Log(Min) + u * (Math.Log(Max) - Math.Log(Min))) : Min + u * (Max - Min);
    }

    /// <summary><paramref name="points"/> evenly spaced values of a range (log-spaced on a log scale), or every choice.</summary>
    internal IReadOnlyList<object> GridValues(int points)
    {
        if (Choices is { } c) return c;
        if (points == 1) return [LogScale ? Math.Sqrt(Min * Max) : (Min + Max) / 2];
        return Enumerable.Range(0, points).Select(i => (double)i / (points - 1))
            .Select(t => (object)(LogScale ? Math.Exp(Math.Log(Min) + t * (Math.Log(Max) - Math.Log(Min))) : Min + t * (Max - Min))).ToList();
    }

    /// <inheritdoc/>
    public override string ToString() => Choices is { } c
        ? $"{Name} in {{{string.Join(", ", c.Select(v => Convert.ToString(v, CultureInfo.InvariantCulture)))}}}"
        : $"{Name} in [{Min.ToString(CultureInfo.InvariantCulture)}, {Max.ToString(CultureInfo.InvariantCulture)}]{(LogScale ? " (log)" : "")}";
}

/// <summary>
/// The model-shape keys a search space may name besides the options: they change the model the estimator sizes to the
/// data (<see cref="MblmTrainingOptions.BaseModel"/>), or <see cref="MblmTrainingOptions.ModelConfig"/> when that is set.
/// Stage 0 is the global stage, the last stage the local one.
/// </summary>
public static class MblmShape
{
    /// <summary>Width (hidden dim) of the global stage (int).</summary>
    public const string GlobalDim = "GlobalDim";
    /// <summary>Width of the local stage (int).</summary>
    public const string LocalDim = "LocalDim";
    /// <summary>Layers of the global stage (int).</summary>
    public const string GlobalLayers = "GlobalLayers";
    /// <summary>Layers of the local stage (int).</summary>
    public const string LocalLayers = "LocalLayers";
    /// <summary>Bytes per patch: the local stage's length (int); a set context is kept by changing the number of patches.</summary>
    public const string PatchSize = "PatchSize";
    /// <summary>Block of the global stage: <c>"transformer"</c> or <c>"mamba2"</c>.</summary>
    public const string GlobalBlock = "GlobalBlock";

    internal static readonly string[] All = [GlobalDim, LocalDim, GlobalLayers, LocalLayers, PatchSize, GlobalBlock];

    /// <summary><paramref name="config"/> with the shape values of <paramref name="parameters"/> applied (others ignored).</summary>
    internal static MblmConfig Apply(MblmConfig config, IReadOnlyDictionary<string, object> parameters, bool keepContext)
    {
        var dims = config.HiddenDims.ToArray();
        var layers = config.NumLayers.ToArray();
        var seqLens = config.SeqLens.ToArray();
        var blocks = config.Blocks.ToArray();
        int last = dims.Length - 1;
        foreach (var (key, value) in parameters)
        {
            switch (key)
            {
                case GlobalDim: dims[0] = Int(key, value); break;
                case LocalDim: dims[last] = Int(key, value); break;
                case GlobalLayers: layers[0] = Int(key, value); break;
                case LocalLayers: layers[last] = Int(key, value); break;
                case PatchSize:
                    long context = config.MaxContext;
                    seqLens[^1] = Int(key, value);
                    if (keepContext) seqLens[0] = (int)((context + seqLens.Skip(1).Aggregate(1L, (a, b) => a * b) - 1) / seqLens.Skip(1).Aggregate(1L, (a, b) => a * b));
                    break;
                case GlobalBlock: blocks[0] = Block(Convert.ToString(value, CultureInfo.InvariantCulture) ?? "", blocks[0]); break;
            }
        }
        return config with { HiddenDims = dims, NumLayers = layers, SeqLens = seqLens, Blocks = blocks };
    }

    private static StageBlockConfig Block(string name, StageBlockConfig current) => name switch
    {
        "transformer" => current as TransformerBlockConfig ?? new TransformerBlockConfig { AttnHeadDims = 32, AttnNumHeads = 4, AttnUseRotEmbs = true },
        "mamba2" => current as Mamba2BlockConfig ?? new Mamba2BlockConfig { DState = 16, DConv = 4, Expand = 2, Headdim = 16 },
        _ => throw new ArgumentException($"{GlobalBlock} must be \"transformer\" or \"mamba2\" (got \"{name}\")"),
    };

    // A range's draw is rounded to the nearest whole number.
    private static int Int(string key, object value) => value is IConvertible c && Math.Round(Convert.ToDouble(c, CultureInfo.InvariantCulture)) is var d
        && d is >= 1 and <= 1 << 20 ? (int)d : throw new ArgumentException($"{key} must be a positive whole number (got {value})");
}

/// <summary>
/// What an experiment searches: ranges and choices over an estimator's options (any public settable option of its
/// options record, by name: <c>LearningRate</c>, <c>BatchSize</c>, <c>WarmupFraction</c>, …) and over the model shape
/// (<see cref="MblmShape"/>: widths, depths, patch size, global block). Dimensions are applied in the order they were added.
/// </summary>
public sealed class MblmSearchSpace
{
    private readonly List<SearchDimension> _dimensions = [];

    /// <summary>The dimensions, in order.</summary>
    public IReadOnlyList<SearchDimension> Dimensions => _dimensions;

    /// <summary>Adds a numeric range (an int option gets the value rounded).</summary>
    public MblmSearchSpace Range(string name, double min, double max, bool logScale = false)
    {
        if (!(min <= max) || !double.IsFinite(min) || !double.IsFinite(max) || logScale && min <= 0)
            throw new ArgumentOutOfRangeException(nameof(min), $"search dimension '{name}': need finite min <= max (and min > 0 on a log scale), got [{min}, {max}]");
        return Add(new SearchDimension(name, min, max, logScale, null));
    }

    /// <summary>Adds a list of choices.</summary>
    public MblmSearchSpace Choice(string name, params object[] values)
    {
        if (values is null || values.Length == 0) throw new ArgumentException($"search dimension '{name}' needs at least one choice", nameof(values));
        return Add(new SearchDimension(name, 0, 0, false, values.ToArray()));
    }

    private MblmSearchSpace Add(SearchDimension d)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(d.Name);
        if (_dimensions.Any(x => x.Name == d.Name)) throw new ArgumentException($"search dimension '{d.Name}' is already in the space");
        _dimensions.Add(d);
        return this;
    }

    /// <summary>
    /// A default space for small CPU experiments: learning rate <paramref name="minLearningRate"/>..<paramref name="maxLearningRate"/>
    /// (log), batch size 8/16/32, global width 64/128, global layers 1..3, patch size 4/8, global block Transformer or Mamba2.
    /// </summary>
    public static MblmSearchSpace Default(double minLearningRate = 3e-4, double maxLearningRate = 1e-2) => new MblmSearchSpace()
        .Range(nameof(MblmTrainingOptions.LearningRate), minLearningRate, maxLearningRate, logScale: true)
        .Choice(nameof(MblmTrainingOptions.BatchSize), 8, 16, 32)
        .Choice(MblmShape.GlobalDim, 64, 128)
        .Range(MblmShape.GlobalLayers, 1, 3)
        .Choice(MblmShape.PatchSize, 4, 8)
        .Choice(MblmShape.GlobalBlock, "transformer", "mamba2");

    /// <summary>One point drawn at random.</summary>
    public IReadOnlyDictionary<string, object> Sample(Random rng) => _dimensions.ToDictionary(d => d.Name, d => d.Draw(rng));

    /// <summary>Every point of the grid (<paramref name="pointsPerRange"/> values per range, every choice), in order.</summary>
    public IEnumerable<IReadOnlyDictionary<string, object>> Grid(int pointsPerRange = 3)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pointsPerRange, 1);
        IEnumerable<Dictionary<string, object>> points = [[]];
        foreach (var d in _dimensions)
            points = points.SelectMany(p => d.GridValues(pointsPerRange).Select(v => new Dictionary<string, object>(p) { [d.Name] = v }));
        return points;
    }

    /// <summary>
    /// <paramref name="options"/> with <paramref name="parameters"/> applied: option names set the option (converted to its
    /// type; ints rounded), shape keys change the model. Unknown names throw <see cref="ArgumentException"/> naming them.
    /// </summary>
    public static TOptions Apply<TOptions>(TOptions options, IReadOnlyDictionary<string, object> parameters) where TOptions : MblmTrainingOptions
    {
        ArgumentNullException.ThrowIfNull(options);
        var result = options with { };
        foreach (var (name, value) in parameters)
        {
            if (MblmShape.All.Contains(name)) continue;
            var property = typeof(TOptions).GetProperty(name, BindingFlags.Public | BindingFlags.Instance);
            if (property is null || !property.CanWrite)
                throw new ArgumentException($"search dimension '{name}' is neither an option of {typeof(TOptions).DeclaringType?.Name ?? typeof(TOptions).Name}.Options " +
                                            $"nor a shape key ({string.Join(", ", MblmShape.All)})");
            property.SetValue(result, Convert(value, property.PropertyType, name));
        }
        if (parameters.Keys.Any(MblmShape.All.Contains))
        {
            result = result.ModelConfig is { } set
                ? result with { ModelConfig = MblmShape.Apply(set, parameters, keepContext: true) }
                : result with { BaseModel = MblmShape.Apply(result.SizedShape, parameters, keepContext: false) };
        }
        return result;
    }

    /// <summary>
    /// The values as they are applied: numbers as doubles, a whole-number option or shape key's rounded (so tables and the
    /// journal show what the trial ran with).
    /// </summary>
    internal static IReadOnlyDictionary<string, object> Resolve<TOptions>(IReadOnlyDictionary<string, object> parameters)
    {
        var result = new Dictionary<string, object>();
        foreach (var (name, value) in parameters)
        {
            var type = typeof(TOptions).GetProperty(name, BindingFlags.Public | BindingFlags.Instance)?.PropertyType;
            type = type is null ? null : Nullable.GetUnderlyingType(type) ?? type;
            bool whole = type == typeof(int) || type == typeof(long) || name is MblmShape.GlobalDim or MblmShape.LocalDim or MblmShape.GlobalLayers
                or MblmShape.LocalLayers or MblmShape.PatchSize;
            // numbers as doubles (as the journal reads them back), strings as they are
            result[name] = value is string or bool || value is not IConvertible ? value
                : whole ? Math.Round(System.Convert.ToDouble(value, CultureInfo.InvariantCulture)) : System.Convert.ToDouble(value, CultureInfo.InvariantCulture);
        }
        return result;
    }

    private static object? Convert(object value, Type type, string name)
    {
        var target = Nullable.GetUnderlyingType(type) ?? type;
        try
        {
            if (target.IsEnum) return value is string s ? Enum.Parse(target, s) : Enum.ToObject(target, value);
            if (target == typeof(int) || target == typeof(long))
                return System.Convert.ChangeType(Math.Round(System.Convert.ToDouble(value, CultureInfo.InvariantCulture)), target, CultureInfo.InvariantCulture);
            return System.Convert.ChangeType(value, target, CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is InvalidCastException or FormatException or OverflowException or ArgumentException)
        {
            throw new ArgumentException($"search dimension '{name}': {value} is not a {target.Name}", e);
        }
    }

    /// <inheritdoc/>
    public override string ToString() => string.Join("; ", _dimensions);
}
