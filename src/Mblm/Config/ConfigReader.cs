using System.Globalization;
using System.Text;
using YamlDotNet.RepresentationModel;

namespace Mblm.Config;

/// <summary>
/// Reads MBLM configs from JSON or YAML (JSON is read as YAML flow syntax): either a bare model config
/// (<c>num_tokens</c>, <c>hidden_dims</c>, … at the top level) or a reference training file with the model keys under
/// <c>params</c> next to <c>input_seq_len</c>, and <c>train</c> / <c>io</c> / <c>resume</c> sections.
/// Integers may carry YAML underscores (<c>200_000_000_000</c>).
/// </summary>
public static partial class ConfigReader
{
    private static readonly string[] ModelKeys = ["num_tokens", "pad_token_id", "hidden_dims", "num_layers", "seq_lens", "train_checkpoint_chunks", "block"];

    /// <summary>Loads the model config of a file (bare or training layout); errors name the file and key.</summary>
    public static MblmConfig LoadModel(string path) => LoadFile(path).Model;

    /// <summary>Loads a config file; see <see cref="MblmConfigFile"/>.</summary>
    public static MblmConfigFile LoadFile(string path)
    {
        try { return Parse(ReadText(path)); }
        catch (ConfigException e) { throw Rewrap(e, path); }
    }

    // A config file's text, refusing directories and files beyond Limits.MaxConfigBytes before reading them.
    internal static string ReadText(string path)
    {
        if (Directory.Exists(path)) throw new ConfigException("(document)", "is a directory, not a config file", path);
        if (!File.Exists(path)) throw new FileNotFoundException($"config file '{path}' does not exist", path);
        long length = new FileInfo(path).Length;
        if (length > Limits.MaxConfigBytes)
            throw new ConfigException("(document)", $"is {Limits.FormatBytes(length)}; config files are at most {Limits.FormatBytes(Limits.MaxConfigBytes)}", path);
        return File.ReadAllText(path);
    }

    // Parses YAML/JSON text into a document, after a streaming pass that bounds nesting depth and size: the document model
    // is built recursively, so a deeply nested file would otherwise end the process with a stack overflow.
    internal static YamlStream LoadYaml(string text)
    {
        if (text.Length > Limits.MaxConfigBytes) throw new ConfigException("(document)", $"is longer than {Limits.FormatBytes(Limits.MaxConfigBytes)}");
        const int maxEvents = 1_000_000;
        try
        {
            var parser = new YamlDotNet.Core.Parser(new StringReader(text));
            int depth = 0, events = 0;
            while (parser.MoveNext())
            {
                switch (parser.Current)
                {
                    case YamlDotNet.Core.Events.MappingStart or YamlDotNet.Core.Events.SequenceStart:
                        if (++depth > Limits.MaxNestingDepth)
                            throw new ConfigException("(document)", $"nests deeper than {Limits.MaxNestingDepth} levels");
                        break;
                    case YamlDotNet.Core.Events.MappingEnd or YamlDotNet.Core.Events.SequenceEnd:
                        depth--;
                        break;
                }
                if (++events > maxEvents) throw new ConfigException("(document)", $"has more than {maxEvents:N0} YAML nodes");
            }
            var stream = new YamlStream();
            stream.Load(new StringReader(text));
            return stream;
        }
        catch (YamlDotNet.Core.YamlException e) { throw new ConfigException("(document)", $"is not valid YAML/JSON: {e.Message}"); }
        catch (InvalidOperationException e) // YamlDotNet's scanner on some malformed flow collections and keys
        {
            throw new ConfigException("(document)", $"is not valid YAML/JSON: {e.Message}");
        }
    }

    private static ConfigException Rewrap(ConfigException e, string path) => new(e.Key, RuleOf(e), path);

    private static string RuleOf(ConfigException e)
    {
        string marker = $"config key '{e.Key}' ";
        int at = e.Message.IndexOf(marker, StringComparison.Ordinal);
        return at < 0 ? e.Message : e.Message.Substring(at + marker.Length);
    }

    /// <summary>Parses config text (JSON or YAML).</summary>
    public static MblmConfigFile Parse(string text)
    {
        var stream = LoadYaml(text);
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root)
            throw new ConfigException("(document)", "must be a mapping of config keys");

        var top = Keys(root, "");
        if (top.ContainsKey("params"))
        {
            foreach (string k in top.Keys)
                if (k is not ("params" or "train" or "io" or "resume"))
                    throw new ConfigException(k, "is not a training-file section (expected params, train, io, resume)");
            var pars = AsMapping(top["params"], "params");
            var parKeys = Keys(pars, "params.");
            long? inputSeqLen = parKeys.TryGetValue("input_seq_len", out var isl) ? Long(isl, "params.input_seq_len") : null;
            if (inputSeqLen is not null && inputSeqLen <= 0) throw new ConfigException("params.input_seq_len", "must be a positive integer");
            var model = ReadModel(parKeys, "params.", allowed: ["input_seq_len"]);
            var io = top.TryGetValue("io", out var ioNode) ? Flatten(AsMapping(ioNode, "io")) : new Dictionary<string, string?>();
            var train = top.TryGetValue("train", out var t) ? ReadTrain(AsMapping(t, "train"), io, inputSeqLen) : null;
            return new MblmConfigFile(model, inputSeqLen, train, io);
        }
        return new MblmConfigFile(ReadModel(top, "", allowed: []), null, null, new Dictionary<string, string?>());
    }

    private static MblmConfig ReadModel(Dictionary<string, YamlNode> keys, string prefix, string[] allowed)
    {
        foreach (string k in keys.Keys)
            if (!ModelKeys.Contains(k) && !allowed.Contains(k))
                throw new ConfigException(prefix + k, $"is not a model config key (expected one of {string.Join(", ", ModelKeys)})");
        YamlNode Need(string k) => keys.TryGetValue(k, out var v) ? v : throw new ConfigException(prefix + k, "is required");

        var hidden = IntList(Need("hidden_dims"), prefix + "hidden_dims");
        var blockNode = Need("block");
        IReadOnlyList<StageBlockConfig> blocks = blockNode is YamlSequenceNode seq
            ? seq.Children.Select((b, i) => ReadBlock(b, $"{prefix}block[{i}]")).ToList()
            : Enumerable.Repeat(ReadBlock(blockNode, prefix + "block"), hidden.Count).ToList();
        IReadOnlyList<int>? chunks = keys.TryGetValue("train_checkpoint_chunks", out var c) && !IsNull(c)
            ? IntList(c, prefix + "train_checkpoint_chunks") : null;
        if (!keys.ContainsKey("train_checkpoint_chunks"))
            throw new ConfigException(prefix + "train_checkpoint_chunks", "is required (write null for no checkpointing)");
        var config = new MblmConfig
        {
            NumTokens = Int(Need("num_tokens"), prefix + "num_tokens"),
            PadTokenId = Int(Need("pad_token_id"), prefix + "pad_token_id"),
            HiddenDims = hidden,
            NumLayers = IntList(Need("num_layers"), prefix + "num_layers"),
            SeqLens = IntList(Need("seq_lens"), prefix + "seq_lens"),
            TrainCheckpointChunks = chunks,
            Blocks = blocks,
        };
        try { return config.Validate(); }
        catch (ConfigException e)
        {
            // A single `block` mapping applies to every stage: report the key as written in the file.
            string key = blockNode is YamlSequenceNode ? e.Key : System.Text.RegularExpressions.Regex.Replace(e.Key, @"^block\[\d+\]", "block");
            throw new ConfigException(prefix + key, RuleOf(e));
        }
    }

    /// <summary>
    /// Dispatches on <c>block_type</c> through <see cref="StageBlocks"/> and reads the block's fields; when block_type is
    /// absent, Mamba fields select <c>mamba2</c> and attention fields the causal <c>transformer</c> (the reference picks by
    /// first successful parse over an unordered set, sometimes a non-causal encoder).
    /// </summary>
    private static StageBlockConfig ReadBlock(YamlNode node, string path)
    {
        var keys = Keys(AsMapping(node, path), path + ".");
        string? type = keys.TryGetValue("block_type", out var bt) ? Str(bt, path + ".block_type") : null;
        if (type is null)
        {
            bool Has(Type t) => StageBlocks.FieldsOf(t).Any(f => keys.ContainsKey(f.Key));
            bool hasMamba = Has(typeof(Mamba2BlockConfig)), hasAttn = Has(typeof(TransformerBlockConfig));
            if (hasMamba && hasAttn) throw new ConfigException(path, "mixes Mamba fields and attention fields; set block_type");
            if (!hasMamba && !hasAttn) throw new ConfigException(path + ".block_type", "is required when the block has neither Mamba nor attention fields");
            type = hasMamba ? "mamba2" : "transformer";
        }
        var configType = StageBlocks.Find(type) ?? throw new ConfigException(path + ".block_type", type switch
        {
            "mamba1" => "'mamba1' is not supported: it is the reference's CPU fallback (mambapy), a different architecture from the paper's Mamba2; use mamba2",
            _ => $"must be one of the registered block types ({string.Join(", ", StageBlocks.Names.Select(n => $"'{n}'"))}), got '{type}'",
        });
        var fields = StageBlocks.FieldsOf(configType);
        foreach (string k in keys.Keys)
            if (k is not ("block_type" or "pos_emb_type") && fields.All(f => f.Key != k))
                throw new ConfigException($"{path}.{k}", $"is not a field of this block type (expected block_type, pos_emb_type, {string.Join(", ", fields.Select(f => f.Key))})");
        PosEmbType pos = keys.TryGetValue("pos_emb_type", out var pe) ? ReadPosEmb(pe, path + ".pos_emb_type") : PosEmbType.None;
        var values = new Dictionary<string, object?>();
        foreach (var f in fields)
        {
            string key = $"{path}.{f.Key}";
            if (!keys.TryGetValue(f.Key, out var v) || IsNull(v))
            {
                if (f.Required) throw new ConfigException(key, "is required");
                if (v is not null && f.IsNullable) values[f.Key] = null;
                continue;
            }
            var t = f.ValueType;
            values[f.Key] = t == typeof(int) ? Int(v, key) : t == typeof(long) ? Long(v, key) : t == typeof(double) ? Double(v, key)
                : t == typeof(float) ? (float)Double(v, key) : t == typeof(bool) ? Bool(v, key) : Str(v, key);
        }
        return StageBlocks.Create(configType, pos, values);
    }

    // The train section (the reference's CoreTrainConfig: target_elements, batch_size, learning_rate and
    // gradient_accumulate_every are required there, so here too) with the io section's typed values and input_seq_len.
    private static ReferenceTrainingSettings ReadTrain(YamlMappingNode node, IReadOnlyDictionary<string, string?> io, long? inputSeqLen)
    {
        var k = Keys(node, "train.");
        string[] known = ["target_elements", "target_elements_strategy", "warmup_steps_perc", "batch_size", "shuffle_train", "shuffle_eval",
            "max_eval_steps", "learning_rate", "gradient_clipping", "gradient_accumulate_every"];
        foreach (string key in k.Keys)
            if (!known.Contains(key)) throw new ConfigException("train." + key, $"is not a train key (expected one of {string.Join(", ", known)})");
        T Required<T>(string key, Func<YamlNode, string, T> read) =>
            k.TryGetValue(key, out var v) && !IsNull(v) ? read(v, "train." + key)
                : throw new ConfigException("train." + key, "is required in a train section (as in the reference's CoreTrainConfig)");
        T Optional<T>(string key, Func<YamlNode, string, T> read, T fallback) =>
            k.TryGetValue(key, out var v) && !IsNull(v) ? read(v, "train." + key) : fallback;
        string Io(string key, string fallback) => io.TryGetValue(key, out var v) && !string.IsNullOrEmpty(v) ? v : fallback;
        int IoInt(string key, int fallback) =>
            !io.TryGetValue(key, out var v) || string.IsNullOrEmpty(v) ? fallback
                : int.TryParse(v.Replace("_", ""), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int x) ? x
                : throw new ConfigException("io." + key, $"must be a non-negative integer, got '{v}'");
        var d = new ReferenceTrainingSettings();
        return new ReferenceTrainingSettings
        {
            InputSeqLen = inputSeqLen,
            TargetElements = Required("target_elements", Long),
            TargetElementsStrategy = Optional("target_elements_strategy", Str, d.TargetElementsStrategy),
            WarmupStepsPerc = Optional("warmup_steps_perc", Double, d.WarmupStepsPerc),
            BatchSize = Required("batch_size", Int),
            ShuffleTrain = Optional("shuffle_train", Bool, d.ShuffleTrain),
            ShuffleEval = Optional("shuffle_eval", Bool, d.ShuffleEval),
            MaxEvalSteps = Optional<long?>("max_eval_steps", (n, p) => Long(n, p), null),
            LearningRate = Required("learning_rate", Double),
            GradientClipping = Optional<double?>("gradient_clipping", (n, p) => Double(n, p), null),
            GradientAccumulateEvery = Required("gradient_accumulate_every", Int),
            NameModel = Io("name_model", d.NameModel),
            OutputDir = Io("output_dir", d.OutputDir),
            DatasetDir = Io("dataset_dir", d.DatasetDir),
            DatasetId = Io("dataset_id", d.DatasetId),
            NumModelsToSave = IoInt("num_models_to_save", d.NumModelsToSave),
            ValidateAmount = IoInt("validate_amount", d.ValidateAmount),
            LogTrainLossAmount = IoInt("log_train_loss_amount", d.LogTrainLossAmount),
        };
    }

    // ---- YAML node helpers: every error names the key path ----

    private static YamlMappingNode AsMapping(YamlNode node, string path) =>
        node as YamlMappingNode ?? throw new ConfigException(path, "must be a mapping");

    private static Dictionary<string, YamlNode> Keys(YamlMappingNode map, string prefix)
    {
        var d = new Dictionary<string, YamlNode>();
        foreach (var (key, value) in map.Children)
        {
            string name = key is YamlScalarNode s ? s.Value ?? "" : throw new ConfigException(prefix + "?", "keys must be scalars");
            if (!d.TryAdd(name, value)) throw new ConfigException(prefix + name, "appears twice");
        }
        return d;
    }

    private static YamlNode Need(Dictionary<string, YamlNode> keys, string path, string k) =>
        keys.TryGetValue(k, out var v) && !IsNull(v) ? v : throw new ConfigException($"{path}.{k}", "is required");

    private static T Opt<T>(Dictionary<string, YamlNode> keys, string k, string path, Func<YamlNode, string, T> read, T fallback) =>
        keys.TryGetValue(k, out var v) && !IsNull(v) ? read(v, $"{path}.{k}") : fallback;

    private static bool IsNull(YamlNode n) => n is YamlScalarNode s && s.Style is YamlDotNet.Core.ScalarStyle.Plain or YamlDotNet.Core.ScalarStyle.Any
        && (s.Value is null or "" or "~" or "null" or "Null" or "NULL");

    private static string Scalar(YamlNode n, string path) =>
        n is YamlScalarNode s && s.Value is not null ? s.Value : throw new ConfigException(path, "must be a scalar value");

    private static string Str(YamlNode n, string path) => Scalar(n, path);

    private static long Long(YamlNode n, string path)
    {
        string raw = Scalar(n, path).Replace("_", "");
        if (long.TryParse(raw, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v)) return v;
        // Accept integral floats such as 1e9 or 8192.0, as pydantic does for ints.
        if (double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && d == Math.Floor(d) && Math.Abs(d) < 9.2e18) return (long)d;
        throw new ConfigException(path, $"must be an integer, got '{Scalar(n, path)}'");
    }

    private static int Int(YamlNode n, string path)
    {
        long v = Long(n, path);
        return v is >= int.MinValue and <= int.MaxValue ? (int)v : throw new ConfigException(path, $"must fit a 32-bit integer, got {v}");
    }

    private static double Double(YamlNode n, string path) =>
        double.TryParse(Scalar(n, path).Replace("_", ""), NumberStyles.Float, CultureInfo.InvariantCulture, out double v)
            ? v : throw new ConfigException(path, $"must be a number, got '{Scalar(n, path)}'");

    private static bool Bool(YamlNode n, string path) => Scalar(n, path) switch
    {
        "true" or "True" or "TRUE" => true,
        "false" or "False" or "FALSE" => false,
        var s => throw new ConfigException(path, $"must be true or false, got '{s}'"),
    };

    private static IReadOnlyList<int> IntList(YamlNode n, string path) => n is YamlSequenceNode seq
        ? seq.Children.Select((c, i) => Int(c, $"{path}[{i}]")).ToList()
        : throw new ConfigException(path, "must be a list of integers");

    private static PosEmbType ReadPosEmb(YamlNode n, string path)
    {
        if (IsNull(n)) return PosEmbType.None;
        return Scalar(n, path) switch
        {
            "fixed" => PosEmbType.Fixed,
            "rope" => PosEmbType.Rope,
            var s => throw new ConfigException(path, $"must be 'fixed', 'rope' or null, got '{s}'"),
        };
    }

    // The io section's values as text: scalars as written, other values rendered compactly (flow style) with a bound on
    // the output, so that YAML aliases, which share nodes, cannot expand into gigabytes.
    private static Dictionary<string, string?> Flatten(YamlMappingNode map)
    {
        var d = new Dictionary<string, string?>();
        foreach (var (k, v) in map.Children)
        {
            string key = k is YamlScalarNode scalar ? scalar.Value ?? "" : throw new ConfigException("io.?", "keys must be scalars (a sequence or mapping was used as a key)");
            if (d.ContainsKey(key)) throw new ConfigException("io." + key, "appears twice");
            if (v is YamlScalarNode s) { d[key] = s.Value; continue; }
            var sb = new System.Text.StringBuilder();
            if (!Render(v, sb, 0)) throw new ConfigException("io." + key, $"renders to more than {MaxRenderedValue:N0} characters (YAML aliases expand when read back)");
            d[key] = sb.ToString();
        }
        return d;
    }

    private const int MaxRenderedValue = 65_536;

    private static bool Render(YamlNode node, System.Text.StringBuilder sb, int depth)
    {
        if (sb.Length > MaxRenderedValue || depth > Limits.MaxNestingDepth) return false;
        switch (node)
        {
            case YamlScalarNode s:
                sb.Append(s.Value);
                return sb.Length <= MaxRenderedValue;
            case YamlSequenceNode seq:
                sb.Append('[');
                for (int i = 0; i < seq.Children.Count; i++)
                {
                    if (i > 0) sb.Append(", ");
                    if (!Render(seq.Children[i], sb, depth + 1)) return false;
                }
                sb.Append(']');
                return true;
            case YamlMappingNode map:
                sb.Append('{');
                bool first = true;
                foreach (var (k, v) in map.Children)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    if (!Render(k, sb, depth + 1)) return false;
                    sb.Append(": ");
                    if (!Render(v, sb, depth + 1)) return false;
                }
                sb.Append('}');
                return true;
            default:
                return true;
        }
    }
}

/// <summary>A parsed config file: the model, and for reference training files their other sections.</summary>
/// <param name="Model">The validated model config.</param>
/// <param name="InputSeqLen"><c>params.input_seq_len</c> when the file is a training file.</param>
/// <param name="Train">The <c>train</c> section with the <c>io</c> section's typed values and <c>input_seq_len</c>; null when the file has no <c>train</c> section.</param>
/// <param name="Io">The <c>io</c> section's scalar values (paths are placeholders in the shipped files).</param>
public sealed record MblmConfigFile(MblmConfig Model, long? InputSeqLen, ReferenceTrainingSettings? Train, IReadOnlyDictionary<string, string?> Io);
