using Mblm.Model;
using Mblm.Training;
using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace Mblm.MLNet.Classification;

/// <summary>
/// What the MBLM classifiers (text and byte vectors, visual question answering) share on top of
/// <see cref="MblmTrainerBase{TOptions, TTransformer}"/>: at least two classes for the pooled head, the seeded stratified
/// validation split, the pooled head and its objective, and the hand-over of model, head and classes to the transformer.
/// A classifier supplies how rows become samples and its transformer. Only this library derives classifiers from it.
/// </summary>
/// <typeparam name="TOptions">The classifier's options.</typeparam>
/// <typeparam name="TTransformer">The transformer it fits.</typeparam>
public abstract class MblmClassifierTrainerBase<TOptions, TTransformer> : MblmTrainerBase<TOptions, TTransformer>
    where TOptions : MblmClassifierOptions
    where TTransformer : class, ITransformer
{
    private protected MblmClassifierTrainerBase(IHostEnvironment environment, TOptions options, string logPrefix, string lossName)
        : base(environment, options, logPrefix, lossName) { }

    /// <summary>Hook: the weight of the auxiliary next-byte loss of a pooled-head fit (the row's own bytes).</summary>
    private protected abstract double NextByteWeight(TOptions options);

    /// <summary>Hook: the fitted classifier, owning the model and (pooled head) the head; <paramref name="classes"/> in key order.</summary>
    private protected abstract TTransformer CreateClassifier(TOptions options, MblmModel model, string[] classes, TrainingSummary summary, PooledClassifierHead? head);

    /// <summary>Refuses fewer than two classes for the pooled head, naming the label column.</summary>
    private protected void CheckClassCount(int classes, string labelColumn)
    {
        if (TrainerOptions.Objective == MblmClassifierObjective.PooledHead && classes < 2)
            throw new ArgumentException($"column '{labelColumn}' has {classes} class; a classifier needs at least 2", "input");
    }

    /// <summary>
    /// The training set of labelled samples (one per row, <paramref name="keys"/> their 1-based classes): a seeded split,
    /// stratified by class, of <see cref="MblmClassifierOptions.ValidationFraction"/> of the rows validates after every
    /// epoch; <paramref name="trainSource"/> makes the training source of the remaining rows' indices (default: the samples).
    /// </summary>
    private protected ClassTrainingSet Split(List<ByteSample> samples, IReadOnlyList<uint> keys, string[] classes, long longest, long longestRow, string rowsName,
        string tooLongHint, Func<List<int>, ISampleSource>? trainSource = null)
    {
        var held = ValidationSplit.Choose(keys, TrainerOptions.ValidationRows(samples.Count), Seed);
        var trainRows = Enumerable.Range(0, samples.Count).Where(i => !held.Contains(i)).ToList();
        var train = trainSource?.Invoke(trainRows) ?? new ListSource(trainRows.Select(i => samples[i]).ToList());
        return new ClassTrainingSet(train, trainRows.Sum(i => (long)samples[i].Ids.Length),
            $"{trainRows.Count} {rowsName} (longest {longest} tokens), {classes.Length} classes" + (held.Count > 0 ? $", {held.Count} rows held out to validate" : ""), classes)
        {
            LongestSample = longest, LongestRow = longestRow, TooLongHint = tooLongHint,
            Validation = held.Count > 0 ? new ListSource(held.Order().Select(i => samples[i]).ToList()) : null,
        };
    }

    private protected sealed override FitObjective CreateObjective(TOptions options, MblmModel model, TrainingSet data)
    {
        if (options.Objective != MblmClassifierObjective.PooledHead) return base.CreateObjective(options, model, data);
        var head = new PooledClassifierHead(model.PooledWidth, ((ClassTrainingSet)data).Classes.Length, options.Dropout);
        return new FitObjective(new ClassificationObjective(head, options.LabelSmoothing, NextByteWeight(options), options.RandomPatchShift), head);
    }

    private protected sealed override TTransformer CreateTransformer(TOptions options, MblmModel model, PooledClassifierHead? head, TrainingSummary summary, TrainingSet data) =>
        CreateClassifier(options, model, ((ClassTrainingSet)data).Classes, summary, head);

    /// <summary>A classifier's training set: its samples and its classes in key order.</summary>
    private protected sealed record ClassTrainingSet(ISampleSource Train, long TrainingBytes, string Description, string[] Classes)
        : TrainingSet(Train, TrainingBytes, Description, "rows");
}
