using Mblm.Config;
using Mblm.Model;
using Mblm.Training;
using Mblm.Weights;
using TorchSharp;

namespace Mblm.Cli;

/// <summary>
/// <c>mblm eval (--config C --weights W | --model DIR) --data FILE</c>: byte-weighted loss over the whole file in consecutive windows of
/// the model's context; prints <c>{"bits_per_byte": x, "loss": y, "bytes": n}</c> as the last line.
/// </summary>
internal static class EvalCommand
{
    public static int Run(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        var (configPath, weights) = CliPaths.ModelFiles(args);
        string weightsPath = weights!, dataPath = args.Required("data");
        int? batch = args.Int("batch", 1), window = args.Int("window", 1);
        var device = DeviceOption.Parse(args.Optional("device"));
        args.RejectUnknown("eval");
        CliPaths.InputFile("data", dataPath);
        var file = CliModel.LoadFile(configPath);
        int windowLength = window ?? WindowOf(file);
        using var data = new ByteFileDataset(dataPath, windowLength);
        if (data.Length == 0) throw new InvalidInputException($"--data '{dataPath}' is empty: no bytes to evaluate");
        var model = CliModel.Load(file.Model, weightsPath, device);
        stderr.WriteLine($"mblm eval: {data.Length:N0} bytes in windows of {windowLength} on {device.type}");
        var result = Evaluator.EvaluateFile(model, data, windowLength, batch ?? 4);
        if (result.Bytes == 0) throw new InvalidInputException($"--data '{dataPath}': no bytes to evaluate");
        if (!double.IsFinite(result.Loss)) stderr.WriteLine($"mblm eval: warning: the loss is not finite ({result.Loss}); printed as null");
        stdout.WriteLine($"{{\"bits_per_byte\": {CliJson.Number(result.BitsPerByte)}, \"loss\": {CliJson.Number(result.Loss)}, \"bytes\": {result.Bytes}}}");
        return 0;
    }

    /// <summary>The config's window (input_seq_len, else the model's maximum context), which must fit an int.</summary>
    public static int WindowOf(MblmConfigFile file)
    {
        long window = file.InputSeqLen ?? file.Model.MaxContext;
        return window is > 0 and <= int.MaxValue ? (int)window
            : throw new UsageException($"the config's window ({window:N0} bytes: input_seq_len, else the maximum context) is too long for one sample; give --window L");
    }
}
