using Mblm.MLNet;

namespace Microsoft.ML
{
    /// <summary>Entry point of the MBLM components: <c>mlContext.Mblm()</c>.</summary>
    public static class MblmMLContextExtensions
    {
        /// <summary>The catalog of Multiscale Byte Language Model estimators, evaluation and persistence.</summary>
        public static MblmCatalog Mblm(this MLContext mlContext) => new(mlContext ?? throw new ArgumentNullException(nameof(mlContext)));
    }
}

namespace Mblm.MLNet
{
    using Microsoft.ML;

    /// <summary>Multiscale Byte Language Model components for an <see cref="MLContext"/>.</summary>
    public sealed class MblmCatalog
    {
        internal MblmCatalog(MLContext context) => Context = context;

        internal MLContext Context { get; }

        /// <summary>
        /// A byte-level language model over a text or byte-vector column: trains by next-byte prediction, then adds
        /// <c>BitsPerByte</c>, <c>Features</c> and, with <paramref name="maxNewBytes"/> &gt; 0, <c>Completion</c>.
        /// The model is <see cref="Mblm.Config.MblmPresets.Small"/>; use the options overload for any other.
        /// </summary>
        public MblmLanguageModelTrainer LanguageModel(string inputColumnName = MblmLanguageModelTrainer.Options.DefaultInputColumnName,
            int maxEpochs = MblmLanguageModelTrainer.Options.DefaultMaxEpochs,
            int batchSize = MblmLanguageModelTrainer.Options.DefaultBatchSize,
            double learningRate = MblmLanguageModelTrainer.Options.DefaultLearningRate,
            int maxNewBytes = 0) =>
            new(Context, new MblmLanguageModelTrainer.Options
            {
                InputColumnName = inputColumnName,
                MaxEpochs = maxEpochs,
                BatchSize = batchSize,
                LearningRate = learningRate,
                MaxNewBytes = maxNewBytes,
            });

        /// <summary>A byte-level language model with every option.</summary>
        public MblmLanguageModelTrainer LanguageModel(MblmLanguageModelTrainer.Options options) => new(Context, options);

        /// <summary>
        /// Random-search sweep of the language model's tunable options (those with <c>[Range]</c>/<c>[Choice]</c> attributes:
        /// learning rate, batch size, epochs, warm-up): trial 0 runs <paramref name="baseOptions"/>, later trials draw from the
        /// search space with <paramref name="seed"/>. Every trial is scored by validation bits per byte; the best model is kept.
        /// <paramref name="cancellationToken"/> (or a cancelled <c>MLContext</c>) stops the sweep within one training step
        /// with <see cref="OperationCanceledException"/>.
        /// </summary>
        public MblmSweepResult SweepLanguageModel(IDataView train, IDataView validation, MblmLanguageModelTrainer.Options baseOptions,
            int maxTrials = 8, int seed = 0, TimeSpan? budget = null, IProgress<SweepTrial>? progress = null,
            CancellationToken cancellationToken = default) =>
            MblmSweep.Run(this, train, validation, baseOptions, maxTrials, seed, budget, progress, cancellationToken);

        /// <summary>
        /// Cross-validates the language model: splits <paramref name="data"/> into <paramref name="numberOfFolds"/> folds with
        /// ML.NET's <c>mlContext.Data.CrossValidationSplit</c>, fits <paramref name="options"/> on all folds but one and
        /// evaluates (<see cref="Evaluate"/>) on that one, for every fold. With <see cref="MblmTrainingOptions.CheckpointDirectory"/>
        /// set, fold k checkpoints into its subfolder <c>fold-k</c>. The caller disposes the returned models.
        /// </summary>
        /// <param name="data">The rows (the options' input column).</param>
        /// <param name="options">The estimator's options, the same for every fold.</param>
        /// <param name="numberOfFolds">Folds (2 or more).</param>
        /// <param name="samplingKeyColumnName">Rows with equal values of this column stay in one fold (as in ML.NET's split), or null.</param>
        /// <param name="seed">Seed of the split, or null for the MLContext's.</param>
        /// <returns>One result per fold, in fold order: metrics, model, scored held-out fold.</returns>
        public IReadOnlyList<MblmCrossValidationResult> CrossValidateLanguageModel(IDataView data, MblmLanguageModelTrainer.Options options, int numberOfFolds = 5,
            string? samplingKeyColumnName = null, int? seed = null) =>
            MblmCrossValidation.LanguageModel(this, data, options, numberOfFolds, samplingKeyColumnName, seed);

        /// <summary>
        /// An AutoML-style experiment over the language model (objective: validation bits per byte): see
        /// <see cref="Experiments.MblmExperiment{TOptions, TTransformer}"/>. <c>.Run()</c> runs or resumes it.
        /// </summary>
        public Experiments.MblmExperiment<MblmLanguageModelTrainer.Options, MblmLanguageModelTransformer> LanguageModelExperiment(IDataView train,
            IDataView validation, MblmLanguageModelTrainer.Options baseOptions, Experiments.MblmSearchSpace space, Experiments.MblmExperimentSettings settings) =>
            new(Context, o => LanguageModel(o), baseOptions, space, Experiments.MblmObjective.BitsPerByte(baseOptions?.InputColumnName ?? "Text"),
                train, validation, settings);

        /// <summary>
        /// An experiment over the text classifier (objective: macro-accuracy, unless given). The data's label column must
        /// already be a key (map it with <c>MapValueToKey</c> before).
        /// </summary>
        public Experiments.MblmExperiment<MblmTextClassifierTrainer.Options, MblmTextClassifierTransformer> TextClassifierExperiment(IDataView train,
            IDataView validation, MblmTextClassifierTrainer.Options baseOptions, Experiments.MblmSearchSpace space, Experiments.MblmExperimentSettings settings,
            Experiments.MblmObjective? objective = null) =>
            new(Context, o => TextClassifier(o), baseOptions, space, objective ?? Experiments.MblmObjective.MacroAccuracy(baseOptions?.LabelColumnName ?? "Label"),
                train, validation, settings);

        /// <summary>An experiment over the visual-question-answering classifier (objective: macro-accuracy, unless given); labels as keys.</summary>
        public Experiments.MblmExperiment<Vision.MblmAnswerClassifierTrainer.Options, Vision.MblmAnswerClassifierTransformer> AnswerClassifierExperiment(
            IDataView train, IDataView validation, Vision.MblmAnswerClassifierTrainer.Options baseOptions, Experiments.MblmSearchSpace space,
            Experiments.MblmExperimentSettings settings, Experiments.MblmObjective? objective = null) =>
            new(Context, o => AnswerClassifier(o), baseOptions, space, objective ?? Experiments.MblmObjective.MacroAccuracy(baseOptions?.LabelColumnName ?? "Label"),
                train, validation, settings);

        /// <summary>
        /// Visual question answering as a multiclass trainer: an MBLM trained by next-byte prediction on the answer bytes of
        /// "question, image bytes, question, answer" sequences; predicts by scoring every answer (the label's key values).
        /// </summary>
        public Vision.MblmAnswerClassifierTrainer AnswerClassifier(Vision.MblmAnswerClassifierTrainer.Options options) => new(Context, options);

        /// <summary>
        /// Tokenizer-free text classification as a multiclass trainer (also
        /// <c>mlContext.MulticlassClassification.Trainers.MblmTextClassifier(options)</c>): a byte model learns to continue a
        /// row's bytes with its class name; predicts by scoring every class (the label's key values).
        /// </summary>
        public MblmTextClassifierTrainer TextClassifier(MblmTextClassifierTrainer.Options options) => new(Context, options);

        /// <summary>
        /// Byte-weighted bits per byte and perplexity over every row of scored data: Σ(bits per byte × bytes) / Σ bytes,
        /// with each row's byte count taken from <paramref name="inputColumnName"/> (empty rows count as rows, not bytes).
        /// </summary>
        public MblmLanguageModelMetrics Evaluate(IDataView data, string inputColumnName = MblmLanguageModelTrainer.Options.DefaultInputColumnName,
            string bitsPerByteColumnName = "BitsPerByte") => MblmLanguageModelMetrics.Compute(data, inputColumnName, bitsPerByteColumnName);

        /// <summary>
        /// Saves a whole pipeline (MBLM stages mixed with any ML.NET transforms that <c>mlContext.Model.Save</c> can save)
        /// to one file, atomically: a failed save leaves an existing file untouched. Format: <c>docs/pipeline-format.md</c>.
        /// </summary>
        /// <exception cref="ArgumentException">The pipeline has no stages (an empty pipeline file would not load).</exception>
        /// <exception cref="NotSupportedException">A stage ML.NET cannot save.</exception>
        public void SaveModel(ITransformer model, DataViewSchema inputSchema, string path) => PipelineFile.Save(Context, model, inputSchema, path);

        /// <summary>
        /// Loads a pipeline saved by <see cref="SaveModel"/>; returns it with the input schema it was saved with. The file is
        /// treated as untrusted: each entry is read within a limit derived from what it holds, checked against its SHA-256
        /// (files written before checksums load with a warning in <see cref="MLContext.Log"/>), and every stage's options,
        /// config, weights and columns are checked before the pipeline is returned (<c>docs/pipeline-format.md</c>).
        /// </summary>
        /// <exception cref="MblmFormatException">Anything wrong with the file; names the file and the entry.</exception>
        /// <exception cref="System.IO.FileNotFoundException">The file does not exist.</exception>
        public ITransformer LoadModel(string path, out DataViewSchema inputSchema) => PipelineFile.Load(Context, path, out inputSchema);
    }
}
