using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Mblm.Config;
using Mblm.Model;
using Mblm.Weights;
using Microsoft.ML;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.MLNet;

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
}

/// <summary>Reads a stage written by <see cref="IMblmStage.Save"/> (of version <see cref="StageReader.Version"/> or older).</summary>
internal delegate ITransformer StageLoader(StageReader reader);

/// <summary>The entries every MBLM stage has: <c>stage.json</c> (its options and more), <c>model.json</c> and <c>model.safetensors</c>.</summary>
internal static class StageEntries
{
    public const string Stage = "stage.json";
    public const string Config = "model.json";
    public const string Weights = PipelineArchive.WeightsEntry;

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
internal sealed class StageWriter(ZipArchive zip, string folder)
{
    /// <summary>An options record (or any settings record) as a JSON object, by <see cref="StageEntries.Json"/>'s rules.</summary>
    public static JsonObject ToJson(object settings) =>
        JsonSerializer.SerializeToNode(settings, settings.GetType(), StageEntries.Json)!.AsObject();

    /// <summary>A value as a JSON node.</summary>
    public static JsonNode? ToNode<T>(T value) => JsonSerializer.SerializeToNode(value, StageEntries.Json);

    public void WriteJson(string name, JsonNode json) => PipelineArchive.WriteText(zip, folder + name, json.ToJsonString(StageEntries.Json));

    /// <summary>The model: its config in the reference's keys and its weights as safetensors.</summary>
    public void WriteModel(MblmConfig config, MblmModel model)
    {
        PipelineArchive.WriteText(zip, folder + StageEntries.Config, ConfigWriter.ToJson(config));
        using var w = zip.CreateEntry(folder + StageEntries.Weights, CompressionLevel.NoCompression).Open();
        SafeTensors.Save(model.state_dict(), w);
    }
}

/// <summary>Reads one MBLM stage's entries; every error names the file and the entry.</summary>
internal sealed class StageReader(MLContext context, ZipArchive zip, string path, string folder, int version)
{
    /// <summary>The context the pipeline is loaded into (device choice).</summary>
    public MLContext Context => context;

    /// <summary>The stage layout version the file was written with.</summary>
    public int Version => version;

    /// <summary><c>stage.json</c> as a JSON object.</summary>
    public JsonObject ReadStageJson()
    {
        try { return JsonNode.Parse(PipelineArchive.ReadText(zip, folder + StageEntries.Stage, path))?.AsObject() ?? throw new JsonException("empty"); }
        catch (Exception e) when (e is JsonException or InvalidOperationException) { throw Invalid(StageEntries.Stage, e); }
    }

    /// <summary>A record from <paramref name="json"/> (the whole object, or one property), by <see cref="StageEntries.Json"/>'s rules.</summary>
    public T Read<T>(JsonNode? json, string what)
    {
        try { return json.Deserialize<T>(StageEntries.Json) ?? throw new JsonException($"{what} is missing"); }
        catch (JsonException e) { throw Invalid(StageEntries.Stage, e); }
    }

    /// <summary>The options from <c>stage.json</c> with the config of <c>model.json</c>, checked as an estimator checks them.</summary>
    public TOptions ReadOptions<TOptions>(JsonObject stage) where TOptions : MblmTrainingOptions
    {
        var options = Read<TOptions>(stage, "options") with { ModelConfig = ReadConfig() };
        try { options.Check(); }
        catch (ArgumentException e) { throw Invalid(StageEntries.Stage, e); }
        return options;
    }

    public MblmConfig ReadConfig()
    {
        try { return ConfigReader.Parse(PipelineArchive.ReadText(zip, folder + StageEntries.Config, path)).Model; }
        catch (ConfigException e) { throw new InvalidDataException($"'{path}': {folder}{StageEntries.Config}: {e.Message}", e); }
    }

    /// <summary>Builds the module (without disturbing the caller's random stream), loads the weights strictly and places it on the context's device.</summary>
    public MblmModel ReadModel(MblmConfig config)
    {
        MblmModel model;
        using (var rng = get_rng_state())
        {
            model = new MblmModel(config);
            set_rng_state(rng);
        }
        try
        {
            string name = $"{path}:{folder}{StageEntries.Weights}";
            using (var bytes = PipelineArchive.ReadBytes(zip, folder + StageEntries.Weights, path))
            {
                var tensors = SafeTensors.Load(bytes, name);
                try { ModelWeights.Load(model, tensors, name); }
                finally { foreach (var t in tensors.Values) t.Dispose(); }
            }
            model.to(DeviceChoice.For(context));
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    private InvalidDataException Invalid(string entry, Exception e) => new($"'{path}': {folder}{entry} is not valid: {e.Message}", e);
}
