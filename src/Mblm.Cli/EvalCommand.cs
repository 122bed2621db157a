using System.Globalization;
using Mblm.Config;
using Mblm.Model;
using Mblm.Training;
using Mblm.Weights;
using TorchSharp;

namespace Mblm.Cli;

/// <summary>
/// <c>mblm eval --config C --weights W --data FILE</c>: byte-weighted loss over the whole file in consecutive windows of
/// the model's context; prints <c>{"bits_per_byte": x, "loss": y, "bytes": n}</c> as the last line.
/// </summary>
internal static class EvalCommand
{
    public static int Run(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        string configPath = args.Required("config"), weightsPath = args.Required("weights"), dataPath = args.Required("data");
        long? batch = args.Long("batch"), window = args.Long("window");
        var device = DeviceOption.Parse(args.Optional("device"));
        args.RejectUnknown("eval");
        var file = ConfigReader.LoadFile(configPath);
        var model = CliModel.Load(file.Model, weightsPath, device);
        int windowLength = checked((int)(window ?? file.InputSeqLen ?? file.Model.MaxContext));
        using var data = new ByteFileDataset(dataPath, windowLength);
        stderr.WriteLine($"mblm eval: {data.Length:N0} bytes in windows of {windowLength} on {device.type}");
        var result = Evaluator.EvaluateFile(model, data, windowLength, checked((int)(batch ?? 4)));
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"bits_per_byte\": {result.BitsPerByte:R}, \"loss\": {result.Loss:R}, \"bytes\": {result.Bytes}}}"));
        return 0;
    }
}
