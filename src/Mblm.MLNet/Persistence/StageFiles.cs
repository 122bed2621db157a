using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Mblm.Config;
using Mblm.Model;
using Mblm.Weights;
using Microsoft.ML;
using Microsoft.ML.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.MLNet.Persistence;

/// <summary>
/// An MBLM stage that writes itself into a pipeline file (as ML.NET transformers own <c>SaveModel</c> and a <c>Create</c>
/// with a version). Each implementing type also has a static reader, listed once in <see cref="PipelineFile"/>'s table
/// under its <see cref="Kind"/>.
/// </summary>
internal interface IMblmStage
{
    /// <summary>The stage kind in the manifest, e.g. <c>language-model</c>.</summary>
    string Kind { get; }
    /// <summary>The version of this stage's own layout that <see cref="Save"/> writes (readers accept it and older).</summary>
    int Version { get; }
    /// <summary>Writes the stage's entries into its folder.</summary>
    void Save(StageWriter writer);
    /// <summary>The ML.NET environment the stage was fitted or loaded in (its cancellation stops batch scoring).</summary>
    void AttachHost(Microsoft.ML.Runtime.IHostEnvironment host);
}

/// <summary>
/// A stage with a check that only a load can make: against the columns the stages before it produce from the input schema
/// the pipeline was saved with (e.g. the answer classifier's answers against its label's key values).
/// </summary>
internal interface ICheckedAtLoad
{
    /// <summary>What is wrong, with the entry it concerns (the name inside the stage's folder), or null.</summary>
    (string Entry, string Problem)? ProblemAtLoad(DataViewSchema input);
}

/// <summary>Reads a stage written by <see cref="IMblmStage.Save"/> (of version <see cref="StageReader.Version"/> or older).</summary>
internal delegate ITransformer StageLoader(StageReader reader);

/// <summary>The entries every MBLM stage has: <c>stage.json</c> (its options and more), <c>model.json</c> and <c>model.safetensors</c>.</summary>
internal static class StageEntries
{
    public const string Stage = "stage.json";
    public const string Config = "model.json";
    public const string Weights = PipelineArchive.WeightsEntry;
    public const string Head = "head.safetensors";

    /// <summary>
    /// Options as stored in <c>stage.json</c>: the options record itself, camelCase, enums as names, nulls written out, minus
    /// what is not a setting — data (<see cref="IDataView"/>), callbacks (<see cref="IProgress{T}"/>), the model config
    /// (its own entry, <c>model.json</c>) and members marked <see cref="JsonIgnoreAttribute"/>. Unknown keys are ignored on
    /// reading and missing ones keep the options' defaults, so an added option needs no change here. (Files written before
    /// nulls were written out lack their null options: a stage whose option has a non-null default handles that in its Load.)
    /// </summary>
    public static readonly JsonSerializerOptions Json = new(PipelineArchive.Json)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        TypeInfoResolver = new DefaultJsonTypeInfoResolver { Modifiers = { LeaveOutNonSettings } },
    };

    private static void LeaveOutNonSettings(JsonTypeInfo info)
    {
        if (info.Kind != JsonTypeInfoKind.Object) return;
        for (int i = info.Properties.Count - 1; i >= 0; i--)
        {
            var type = info.Properties[i].PropertyType;
            if (typeof(IDataView).IsAssignableFrom(type) || typeof(MblmConfig).IsAssignableFrom(type)
                || type.IsGenericType && type.GetGenericTypeDefinition() == typeof(IProgress<>))
                info.Properties.RemoveAt(i);
        }
    }
}

/// <summary>Writes one MBLM stage's entries into its folder of the pipeline zip.</summary>
internal sealed class StageWriter(PipelineWriter file, string folder)
{
    /// <summary>An options record (or any settings record) as a JSON object, by <see cref="StageEntries.Json"/>'s rules.</summary>
    public static JsonObject ToJson(object settings) =>
        JsonSerializer.SerializeToNode(settings, settings.GetType(), StageEntries.Json)!.AsObject();

    /// <summary>A value as a JSON node.</summary>
    public static JsonNode? ToNode<T>(T value) => JsonSerializer.SerializeToNode(value, StageEntries.Json);

    public void WriteJson(string name, JsonNode json) => file.WriteText(folder + name, json.ToJsonString(StageEntries.Json));

    /// <summary>The model: its config in the reference's keys and its weights as safetensors.</summary>
    public void WriteModel(MblmConfig config, MblmModel model)
    {
        file.WriteText(folder + StageEntries.Config, ConfigWriter.ToJson(config));
        file.Write(folder + StageEntries.Weights, CompressionLevel.NoCompression, s => SafeTensors.Save(model.state_dict(), s));
    }

    /// <summary>Writes a pooled classifier head's weights (<c>head.safetensors</c>).</summary>
    public void WriteHead(PooledClassifierHead head) =>
        file.Write(folder + StageEntries.Head, CompressionLevel.NoCompression, s => SafeTensors.Save(head.state_dict(), s));
}

/// <summary>
/// Reads one MBLM stage's entries, each within its limit and checked against its checksum; every error is an
/// <see cref="MblmFormatException"/> naming the file and the entry. Settings are read and checked before the model is
/// built, and the weights before they are copied into it.
/// </summary>
internal sealed class StageReader(MLContext? context, PipelineReader file, string folder, string kind, int version)
{
    /// <summary>The context the pipeline is loaded into (device choice).</summary>
    public MLContext Context => context ?? throw new InvalidOperationException("this stage reader reads weights only");

    /// <summary>The stage layout version the file was written with.</summary>
    public int Version => version;

    /// <summary>The stage's kind in the manifest.</summary>
    public string Kind => kind;

    /// <summary>An error about one of this stage's entries (<paramref name="entry"/> is the name inside the folder).</summary>
    public MblmFormatException Invalid(string entry, string problem, Exception? inner = null) => file.Error(folder + entry, problem, inner);

    /// <summary>
    /// <c>stage.json</c> as a JSON object. <paramref name="requiredKeys"/> are the keys every <c>stage.json</c> of this kind
    /// has had since its layout's first version: a file without them belongs to another kind of stage (or is damaged).
    /// </summary>
    public JsonObject ReadStageJson(IReadOnlyCollection<string> requiredKeys)
    {
        string text = file.ReadText(folder + StageEntries.Stage);
        JsonObject stage;
        try
        {
            stage = JsonNode.Parse(text, documentOptions: PipelineArchive.JsonDocumentLimits) as JsonObject ?? throw Invalid(StageEntries.Stage, "must hold a JSON object");
            _ = stage.Count; // duplicate keys are found when the object is first used
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
        {
            throw Invalid(StageEntries.Stage, $"is not valid JSON: {e.Message}", e);
        }
        var missing = requiredKeys.Where(k => !stage.ContainsKey(k)).ToList();
        if (missing.Count > 0)
            throw Invalid(StageEntries.Stage, $"lacks {string.Join(", ", missing.Select(k => $"'{k}'"))}, which the stage.json of every {kind} stage has " +
                                               "(is it another kind of stage's?)");
        return stage;
    }

    /// <summary>A record from <paramref name="json"/> (the whole object, or one property), by <see cref="StageEntries.Json"/>'s rules.</summary>
    public T Read<T>(JsonNode? json, string what)
    {
        if (json is null) throw Invalid(StageEntries.Stage, $"has no {what} (missing or null)");
        try { return json.Deserialize<T>(StageEntries.Json) ?? throw Invalid(StageEntries.Stage, $"has no {what} (null)"); }
        catch (Exception e) when (e is JsonException or ArgumentException or NotSupportedException or InvalidOperationException or FormatException)
        {
            throw Invalid(StageEntries.Stage, $"has an invalid {what}: {e.Message}", e);
        }
    }

    /// <summary>
    /// The options from <c>stage.json</c> with the config of <c>model.json</c>, checked exactly as an estimator checks
    /// options set in code; a broken rule names the option (and the entry: <c>model.json</c> for the model config).
    /// </summary>
    public TOptions ReadOptions<TOptions>(JsonObject stage) where TOptions : MblmTrainingOptions
    {
        var options = Read<TOptions>(stage, "options") with { ModelConfig = ReadConfig() };
        try { options.Check(); }
        catch (ArgumentException e)
        {
            bool config = e.ParamName == nameof(MblmTrainingOptions.ModelConfig);
            string key = string.IsNullOrEmpty(e.ParamName) ? "" : $"option '{JsonNamingPolicy.CamelCase.ConvertName(e.ParamName)}': ";
            throw Invalid(config ? StageEntries.Config : StageEntries.Stage, (config ? "" : key) + MblmTrainingOptions.RuleOf(e), e);
        }
        return options;
    }

    /// <summary><c>model.json</c>: the model config, validated.</summary>
    public MblmConfig ReadConfig()
    {
        string text = file.ReadText(folder + StageEntries.Config);
        try
        {
            var config = ConfigReader.Parse(text).Model;
            config.Validate();
            return config;
        }
        catch (ConfigException e) { throw Invalid(StageEntries.Config, e.Message, e); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException or OverflowException)
        {
            throw Invalid(StageEntries.Config, $"is not a valid model config: {e.Message}", e);
        }
    }

    /// <summary>
    /// The weights as CPU tensors, streamed from the entry into tensor memory. The entry may hold no more than the model of
    /// <paramref name="config"/> needs (its float32 parameters plus <see cref="PipelineArchive.WeightsSlack"/>) and no more
    /// than the memory budget, both checked against its declared size before anything is read. The caller disposes the tensors.
    /// </summary>
    public Dictionary<string, Tensor> ReadTensors(MblmConfig config)
    {
        string entry = folder + StageEntries.Weights;
        long parameters, parameterBytes;
        try { (parameters, parameterBytes) = (config.CountParameters(), config.ParameterBytes()); }
        catch (ConfigException e) { throw Invalid(StageEntries.Config, e.Message, e); }
        long limit = parameterBytes > long.MaxValue / 2 ? long.MaxValue : 8 + parameterBytes + PipelineArchive.WeightsSlack(parameterBytes);
        long budget = Limits.MemoryBudgetBytes;
        Func<string> rule = limit <= budget
            ? () => $"the weights of the model in {folder}{StageEntries.Config} ({parameters:N0} parameters) take at most {Limits.FormatBytes(limit)}"
            : () => $"more than the memory budget of {Limits.FormatBytes(budget)} (Mblm.Limits.MemoryBudgetBytes, MBLM_MEMORY_BUDGET, or --memory-budget)";
        return file.Read(entry, Math.Min(limit, budget), rule, (stream, length) =>
        {
            try { return SafeTensors.Load(stream, entry, length); }
            catch (MblmFormatException e) when (e.FileName != file.Path) { throw Invalid(StageEntries.Weights, ProblemOf(e), e); }
        }, Dispose);
    }

    private static void Dispose(Dictionary<string, Tensor> tensors)
    {
        foreach (var t in tensors.Values) t.Dispose();
    }

    // The problem an MblmFormatException from the safetensors reader describes, without its "'source', entry 'x': " prefix.
    private static string ProblemOf(MblmFormatException e)
    {
        string prefix = $"'{e.FileName}'" + (e.Entry is null ? "" : $", entry '{e.Entry}'") + ": ";
        string problem = e.Message.StartsWith(prefix, StringComparison.Ordinal) ? e.Message[prefix.Length..] : e.Message;
        return e.Entry is null ? problem : $"tensor '{e.Entry}' {problem}";
    }

    /// <summary>
    /// A classifier's model and, for the pooled head, its head (<see cref="ReadHead"/>), handed to <paramref name="create"/>;
    /// both are disposed if anything fails. <paramref name="classesKey"/> names the classes' entry in <c>stage.json</c>.
    /// </summary>
    public T ReadClassifier<T>(Classification.MblmClassifierOptions options, int classes, string classesKey, Func<MblmModel, PooledClassifierHead?, T> create)
    {
        bool pooled = options.Objective == Classification.MblmClassifierObjective.PooledHead;
        if (pooled && classes < 2) throw Invalid(StageEntries.Stage, $"a pooled-head classifier has at least 2 classes; '{classesKey}' lists {classes}");
        return ReadModel(options.ModelConfig!, model =>
        {
            var head = pooled ? ReadHead(model.PooledWidth, classes, options.Dropout) : null;
            try { return create(model, head); }
            catch { head?.Dispose(); throw; }
        });
    }

    /// <summary>Stage layout 1 had one classifier objective, label likelihood: a layout-1 <c>stage.json</c> says so from now on.</summary>
    public void UpgradeClassifierLayout(System.Text.Json.Nodes.JsonObject stage)
    {
        if (Version < 2) stage["objective"] = nameof(Classification.MblmClassifierObjective.LabelLikelihood);
    }

    /// <summary>
    /// The head of a pooled-head classifier: <paramref name="classes"/> logits over <paramref name="width"/> features, its
    /// entry bounded by that size, loaded strictly (names, shapes, finite values) and placed on the context's device.
    /// </summary>
    public PooledClassifierHead ReadHead(long width, long classes, double dropout)
    {
        long bytes = checked((width * classes + classes) * 4);
        long limit = 8 + bytes + PipelineArchive.WeightsSlack(bytes);
        var tensors = file.Read(folder + StageEntries.Head, limit, () => $"a head of {classes} classes over {width} features takes at most {Limits.FormatBytes(limit)}",
            (stream, length) =>
            {
                try { return SafeTensors.Load(stream, folder + StageEntries.Head, length); }
                catch (MblmFormatException e) when (e.FileName != file.Path) { throw Invalid(StageEntries.Head, ProblemOf(e), e); }
            }, Dispose);
        PooledClassifierHead? head = null;
        try
        {
            using (var rng = get_rng_state())
            {
                head = new PooledClassifierHead(width, classes, dropout);
                set_rng_state(rng);
            }
            foreach (var (name, value) in tensors)
            {
                using var finite = value.isfinite().all();
                if (value.is_floating_point() && !finite.item<bool>()) throw Invalid(StageEntries.Head, $"tensor '{name}' holds NaN or infinite values");
            }
            try { ModelWeights.Load(head, tensors, StageEntries.Head); }
            catch (WeightsMismatchException e) { throw Invalid(StageEntries.Head, Mismatch(e), e); }
            catch (MblmFormatException e) when (e.FileName != file.Path) { throw Invalid(StageEntries.Head, ProblemOf(e), e); }
            head.to(DeviceChoice.For(Context));
            head.eval();
            return head;
        }
        catch
        {
            head?.Dispose();
            throw;
        }
        finally
        {
            Dispose(tensors);
        }
    }

    /// <summary>
    /// Builds the model of <paramref name="config"/> (within the memory budget, without disturbing the caller's random
    /// stream), loads the weights strictly (every tensor by name, shape and kind of dtype), places it on the context's device
    /// and hands it to <paramref name="create"/>; the model is disposed if anything fails.
    /// </summary>
    public T ReadModel<T>(MblmConfig config, Func<MblmModel, T> create)
    {
        try { config.RequireFitsMemory(); }
        catch (ConfigException e) { throw Invalid(StageEntries.Config, e.Message, e); }
        var tensors = ReadTensors(config);
        MblmModel? model = null;
        try
        {
            using (var rng = get_rng_state())
            {
                model = new MblmModel(config);
                set_rng_state(rng);
            }
            try { ModelWeights.Load(model, tensors, StageEntries.Weights); }
            catch (WeightsMismatchException e) { throw Invalid(StageEntries.Weights, Mismatch(e), e); }
            catch (MblmFormatException e) when (e.FileName != file.Path) { throw Invalid(StageEntries.Weights, ProblemOf(e), e); }
            Dispose(tensors);
            tensors.Clear();
            model.to(DeviceChoice.For(Context));
            return create(model);
        }
        catch
        {
            Dispose(tensors);
            model?.Dispose();
            throw;
        }
    }

    // A weights/config mismatch, with at most a few names of each sort (a hostile header may list thousands).
    private string Mismatch(WeightsMismatchException e)
    {
        static string Some(IReadOnlyList<string> names, string sep) =>
            string.Join(sep, names.Take(8)) + (names.Count > 8 ? $"{sep}… ({names.Count - 8} more)" : "");
        var parts = new List<string>();
        if (e.Missing.Count > 0) parts.Add($"missing ({e.Missing.Count}): {Some(e.Missing, ", ")}");
        if (e.Unexpected.Count > 0) parts.Add($"unexpected ({e.Unexpected.Count}): {Some(e.Unexpected, ", ")}");
        if (e.Mismatched.Count > 0) parts.Add($"shape mismatch ({e.Mismatched.Count}): {Some(e.Mismatched, "; ")}");
        return $"does not fit the model of {folder}{StageEntries.Config}: {string.Join("; ", parts)}";
    }
}
