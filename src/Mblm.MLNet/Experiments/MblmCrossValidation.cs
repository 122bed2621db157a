using Microsoft.ML;

namespace Mblm.MLNet.Experiments;

/// <summary>
/// One fold of <see cref="MblmCatalog.CrossValidateLanguageModel"/> (as ML.NET's <c>CrossValidationResult</c>): the model
/// fitted on the other folds, its metrics on this fold, and this fold's rows scored by it.
/// </summary>
/// <param name="Metrics">Bits per byte and perplexity on the held-out fold.</param>
/// <param name="Model">The model fitted without this fold (disposable: it owns native memory).</param>
/// <param name="ScoredHoldOutSet">The held-out fold transformed by <paramref name="Model"/> (lazy).</param>
/// <param name="Fold">The fold's index, 0 to numberOfFolds − 1.</param>
public sealed record MblmCrossValidationResult(MblmLanguageModelMetrics Metrics, MblmLanguageModelTransformer Model, IDataView ScoredHoldOutSet, int Fold);

/// <summary>Cross-validation of the language model over ML.NET's own fold split.</summary>
internal static class MblmCrossValidation
{
    public static IReadOnlyList<MblmCrossValidationResult> LanguageModel(MblmCatalog catalog, IDataView data, MblmLanguageModelTrainer.Options options,
        int numberOfFolds, string? samplingKeyColumnName, int? seed)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        if (numberOfFolds < 2)
            throw new ArgumentOutOfRangeException(nameof(numberOfFolds), $"CrossValidateLanguageModel needs at least 2 folds (got {numberOfFolds})");
        options.Check();
        ByteColumn.Check(data.Schema, options.InputColumnName);
        var folds = catalog.Context.Data.CrossValidationSplit(data, numberOfFolds, samplingKeyColumnName, seed);
        var results = new List<MblmCrossValidationResult>();
        try
        {
            for (int fold = 0; fold < folds.Count; fold++)
            {
                // Each fold is its own run: its checkpoints go to their own folder.
                var foldOptions = options.CheckpointDirectory is { } dir ? options with { CheckpointDirectory = Path.Combine(dir, $"fold-{fold}") } : options;
                var model = catalog.LanguageModel(foldOptions).Fit(folds[fold].TrainSet);
                var scored = model.Transform(folds[fold].TestSet);
                MblmLanguageModelMetrics metrics;
                try { metrics = MblmLanguageModelMetrics.Compute(scored, options.InputColumnName, options.BitsPerByteColumnName); }
                catch { model.Dispose(); throw; }
                results.Add(new MblmCrossValidationResult(metrics, model, scored, fold));
            }
        }
        catch
        {
            foreach (var r in results) r.Model.Dispose();
            throw;
        }
        return results;
    }
}
