using Mblm.MLNet;

namespace Microsoft.ML
{
    /// <summary>The MBLM text classifier in ML.NET's multiclass catalog: <c>mlContext.MulticlassClassification.Trainers.MblmTextClassifier(...)</c>.</summary>
    public static class MblmMulticlassClassificationExtensions
    {
        /// <summary>
        /// Tokenizer-free text classification with a byte model (<see cref="MblmTextClassifierTrainer"/>): reads
        /// <paramref name="textColumnName"/> (text or Vector&lt;Byte&gt;), learns the key-typed <paramref name="labelColumnName"/>
        /// and adds <c>Score</c> and <c>PredictedLabel</c>. The model is <see cref="MblmTextClassifierTrainer.BaseModelConfig"/> sized to the data;
        /// use the options overload for any other setting.
        /// </summary>
        public static MblmTextClassifierTrainer MblmTextClassifier(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
            string labelColumnName = "Label", string textColumnName = "Text",
            int maxEpochs = MblmTextClassifierTrainer.Options.DefaultMaxEpochs,
            int batchSize = MblmTextClassifierTrainer.Options.DefaultBatchSize,
            double learningRate = MblmTextClassifierTrainer.Options.DefaultLearningRate) =>
            catalog.MblmTextClassifier(new MblmTextClassifierTrainer.Options
            {
                LabelColumnName = labelColumnName,
                TextColumnName = textColumnName,
                MaxEpochs = maxEpochs,
                BatchSize = batchSize,
                LearningRate = learningRate,
            });

        /// <summary>Tokenizer-free text classification with a byte model, with every option.</summary>
        public static MblmTextClassifierTrainer MblmTextClassifier(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
            MblmTextClassifierTrainer.Options options)
        {
            ArgumentNullException.ThrowIfNull(catalog);
            return new MblmTextClassifierTrainer(HostEnvironments.Of(catalog), options);
        }
    }
}
