namespace Mblm.MLNet;

/// <summary>What a fit did.</summary>
/// <param name="Steps">Optimiser steps taken.</param>
/// <param name="FinalLoss">Training loss of the last step (nats per byte).</param>
/// <param name="ValidationBitsPerByte">
/// Bits per byte on the validation rows at the end (the language model's validation set; a label-likelihood classifier's
/// held-out rows, over their class bytes), if any.
/// </param>
/// <param name="TrainingBytes">Bytes in the training rows.</param>
/// <param name="Seed">The seed drawn from the MLContext (once per estimator, at its first Fit).</param>
public sealed record TrainingSummary(long Steps, double FinalLoss, double? ValidationBitsPerByte, long TrainingBytes, int Seed)
{
    /// <summary>A pooled-head classifier's class cross-entropy (nats) on its held-out rows, at the kept weights; null otherwise.</summary>
    public double? ValidationLoss { get; init; }

    /// <summary>The step whose weights were kept (the best validation), when a validation split chose them; null otherwise.</summary>
    public long? BestStep { get; init; }
}
