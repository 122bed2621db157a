using Mblm.Training;
using Microsoft.ML.Runtime;

namespace Mblm.MLNet.Hosting;

/// <summary>
/// Training progress to <c>MLContext.Log</c> (every tenth of the run, validations and skipped steps) and to the user's
/// callback (every report); then <c>afterEachReport</c> (the Fit's cancellation check).
/// </summary>
internal sealed class ProgressLog(IChannel ch, long steps, string lossName, IProgress<TrainingProgress>? user, Action? afterEachReport = null)
    : IProgress<TrainingProgress>
{
    private readonly long _every = Math.Max(1, steps / 10);

    public void Report(TrainingProgress p)
    {
        if (p.Warning is not null) ch.Warning(MessageSensitivity.None, p.Warning);
        else if (p.Step % _every == 0 || p.Step == p.TotalSteps || p.ValidationBitsPerByte is not null || p.ValidationLoss is not null)
            ch.Info(MessageSensitivity.None, $"step {p.Step}/{p.TotalSteps} {lossName} {p.Loss:F4} lr {p.LearningRate:G3} {p.BytesPerSecond:F0} bytes/s" +
                    (p.ValidationBitsPerByte is double v ? $" validation {v:F4} bits/byte" : "") +
                    (p.ValidationLoss is double c ? $" validation class loss {c:F4} nats" : ""));
        user?.Report(p);
        afterEachReport?.Invoke();
    }
}
