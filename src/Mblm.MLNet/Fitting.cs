using Mblm.Training;
using Microsoft.ML.Runtime;

namespace Mblm.MLNet;

/// <summary>What every MBLM estimator and transformer shares around fitting and saving.</summary>
internal static class Fitting
{
    /// <summary>
    /// Held while a fit seeds the global torch generator, builds its model and trains: fits of every MBLM estimator run one
    /// at a time per process, so a seed gives the same model whatever else runs.
    /// </summary>
    public static readonly object Gate = new();

    /// <summary>Why <c>mlContext.Model.Save</c> refuses our stages, and what to call instead.</summary>
    public const string SaveNotSupported =
        "mlContext.Model.Save cannot store an MBLM stage's weights (ML.NET keeps its model-writing API internal). " +
        "Save the whole pipeline with mlContext.Mblm().SaveModel(model, inputSchema, path) and load it with mlContext.Mblm().LoadModel(path, out inputSchema).";
}

/// <summary>
/// Training progress to <c>MLContext.Log</c> (every tenth of the run, validations and skipped steps) and to the user's
/// callback (every report).
/// </summary>
internal sealed class ProgressLog(IChannel ch, long steps, string lossName, IProgress<TrainingProgress>? user) : IProgress<TrainingProgress>
{
    private readonly long _every = Math.Max(1, steps / 10);

    public void Report(TrainingProgress p)
    {
        if (p.Warning is not null) ch.Warning(MessageSensitivity.None, p.Warning);
        else if (p.Step % _every == 0 || p.Step == p.TotalSteps || p.ValidationBitsPerByte is not null)
            ch.Info(MessageSensitivity.None, $"step {p.Step}/{p.TotalSteps} {lossName} {p.Loss:F4} lr {p.LearningRate:G3} {p.BytesPerSecond:F0} bytes/s" +
                    (p.ValidationBitsPerByte is double v ? $" validation {v:F4} bits/byte" : ""));
        user?.Report(p);
    }
}
