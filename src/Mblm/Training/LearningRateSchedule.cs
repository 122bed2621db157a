namespace Mblm.Training;

/// <summary>
/// The reference's schedule (<c>SequentialLR(LinearLR(0.1 → 1, warmup), CosineAnnealingLR(T_max = steps − warmup))</c>):
/// linear warm-up from 0.1× over the first <c>floor(steps · warmupFraction)</c> optimiser steps, then cosine to 0.
/// </summary>
public sealed record LearningRateSchedule(double BaseLearningRate, long TotalSteps, double WarmupFraction = 0.1)
{
    /// <summary>Number of warm-up steps.</summary>
    public long WarmupSteps => (long)Math.Floor(TotalSteps * WarmupFraction);

    /// <summary>Learning rate for optimiser step <paramref name="step"/> (0-based: the rate the step is taken with).</summary>
    public double At(long step)
    {
        long warmup = WarmupSteps;
        if (step < warmup) return BaseLearningRate * (0.1 + 0.9 * step / warmup);
        long cosineSteps = Math.Max(1, TotalSteps - warmup);
        double progress = Math.Min(1.0, (double)(step - warmup) / cosineSteps);
        return BaseLearningRate * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
