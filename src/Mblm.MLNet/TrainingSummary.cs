namespace Mblm.MLNet;

/// <summary>What a fit did.</summary>
/// <param name="Steps">Optimiser steps taken.</param>
/// <param name="FinalLoss">Training loss of the last step (nats per byte).</param>
/// <param name="ValidationBitsPerByte">Bits per byte on <see cref="MblmLanguageModelTrainer.Options.ValidationSet"/> at the end, if given.</param>
/// <param name="TrainingBytes">Bytes in the training rows.</param>
/// <param name="Seed">The seed drawn from the MLContext (once per estimator, at its first Fit).</param>
public sealed record TrainingSummary(long Steps, double FinalLoss, double? ValidationBitsPerByte, long TrainingBytes, int Seed);
