using System.Text.Json;
using Mblm.Config;
using Mblm.Weights;
using static TorchSharp.torch;

namespace Mblm.Cli;

/// <summary>
/// <c>mblm export --config C --weights W --format reference|safetensors --out DIR</c>: writes the model for the Python
/// reference (<c>DIR/config.yaml</c>, its training YAML, and <c>DIR/model.pth</c>, <c>{"MODEL": state_dict, "LOSS": None}</c>)
/// or as <c>DIR/weights.safetensors</c> + <c>DIR/config.json</c>. Prints <c>{"format": f, "files": [...]}</c>.
/// </summary>
internal static class ExportCommand
{
    public static int Run(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string configPath = args.Required("config"), weightsPath = args.Required("weights"), outDir = args.Required("out");
        string format = args.Optional("format") ?? "reference";
        if (format is not ("reference" or "safetensors")) throw new UsageException($"--format must be reference or safetensors, got '{format}'");
        long? inputSeqLen = args.Long("input-seq-len", 1);
        int? batch = args.Int("batch-size", 1);
        double? lr = args.Double("learning-rate", 0, minExclusive: true);
        long? target = args.Long("target-elements", 1);
        bool resume = args.Switch("resume");
        string? datasetDir = args.Optional("dataset-dir"), datasetId = args.Optional("dataset-id"), outputDir = args.Optional("output-dir"), name = args.Optional("name");
        args.RejectUnknown("export");
        var trainingFlags = new (string Flag, object? Value)[]
        {
            ("input-seq-len", inputSeqLen), ("batch-size", batch), ("learning-rate", lr), ("target-elements", target),
            ("dataset-dir", datasetDir), ("dataset-id", datasetId), ("output-dir", outputDir), ("name", name), ("resume", resume ? "" : null),
        };
        if (format == "safetensors" && trainingFlags.FirstOrDefault(f => f.Value is not null).Flag is { } flag)
            throw new UsageException($"--{flag} sets a value of the reference's training YAML; it applies to --format reference only");
        CliPaths.InputFile("config", configPath);
        CliPaths.InputFile("weights", weightsPath);
        outDir = CliPaths.OutputDirectory("out", outDir);

        var file = CliModel.LoadFile(configPath);
        var fromFile = file.Train ?? new ReferenceTrainingSettings { InputSeqLen = file.InputSeqLen };
        var settings = fromFile with
        {
            InputSeqLen = inputSeqLen ?? fromFile.InputSeqLen,
            BatchSize = batch ?? fromFile.BatchSize,
            LearningRate = lr ?? fromFile.LearningRate,
            TargetElements = target ?? fromFile.TargetElements,
            DatasetDir = datasetDir ?? fromFile.DatasetDir,
            DatasetId = datasetId ?? fromFile.DatasetId,
            OutputDir = outputDir ?? fromFile.OutputDir,
            NameModel = name ?? fromFile.NameModel,
        };
        if (inputSeqLen > file.Model.MaxContext)
            throw new UsageException($"--input-seq-len must be at most the model's maximum context {file.Model.MaxContext} (the product of seq_lens), got {inputSeqLen}");
        if (format == "reference") settings.Validate(file.Model); // before the weights are read
        using var scope = NewDisposeScope();
        using var model = CliModel.Load(file.Model, weightsPath, CPU);
        var written = format == "reference" ? ModelExport.ExportReference(model, outDir, settings, resume: resume) : ModelExport.ExportSafeTensors(model, outDir);
        stderr.WriteLine($"mblm export: {model.state_dict().Count} tensors from '{weightsPath}' as {format} to {outDir}");
        stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object> { ["format"] = format, ["files"] = written }));
        return ExitCodes.Ok;
    }
}
