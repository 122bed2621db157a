namespace Mblm.Config;

/// <summary>
/// The non-model sections of a reference training YAML (<c>mblm.train.mblm.TrainEntryConfig</c>), the one type for both
/// directions: <see cref="ConfigReader"/> reads <c>params.input_seq_len</c>, <c>train</c> and <c>io</c> into it
/// (<see cref="MblmConfigFile.Train"/>) and <see cref="ConfigWriter.ToTrainingYaml"/> writes it; <see cref="OptimizerSteps"/>
/// is the reference's rule for how long <c>target_elements</c> trains. Every
/// property has a default, so that the reference's config class accepts the file as written; set the dataset paths and
/// sizes for a real run.
/// </summary>
public sealed record ReferenceTrainingSettings
{
    /// <summary><c>params.input_seq_len</c>: bytes per training sample; null means the model's maximum context (the product of <c>seq_lens</c>).</summary>
    public long? InputSeqLen { get; init; }

    /// <summary><c>train.target_elements</c>: bytes to train on (counted per <see cref="TargetElementsStrategy"/>). Default 100,000,000.</summary>
    public long TargetElements { get; init; } = 100_000_000;

    /// <summary><c>train.target_elements_strategy</c>: <c>sequence</c> (every byte of a batch counts; default) or <c>batch</c>.</summary>
    public string TargetElementsStrategy { get; init; } = "sequence";

    /// <summary><c>train.batch_size</c>: samples per step and GPU. Default 8.</summary>
    public int BatchSize { get; init; } = 8;

    /// <summary><c>train.learning_rate</c>: peak learning rate. Default 0.001.</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary><c>train.gradient_accumulate_every</c>: batches per optimizer step. Default 1.</summary>
    public int GradientAccumulateEvery { get; init; } = 1;

    /// <summary><c>train.warmup_steps_perc</c>: fraction of steps spent warming up. Default 0.1 (the reference's default).</summary>
    public double WarmupStepsPerc { get; init; } = 0.1;

    /// <summary><c>train.gradient_clipping</c>: the gradient norm bound, or null for none (default).</summary>
    public double? GradientClipping { get; init; }

    /// <summary><c>train.shuffle_train</c>: shuffle the training samples. Default false.</summary>
    public bool ShuffleTrain { get; init; }

    /// <summary><c>train.shuffle_eval</c>: shuffle the validation samples. Default false.</summary>
    public bool ShuffleEval { get; init; }

    /// <summary><c>train.max_eval_steps</c>: a cap on validation batches, or null for the whole validation set (default).</summary>
    public long? MaxEvalSteps { get; init; }

    /// <summary><c>io.name_model</c>: the run's name (checkpoint file names). Default <c>mblm</c>.</summary>
    public string NameModel { get; init; } = "mblm";

    /// <summary><c>io.output_dir</c>: where the reference writes its runs. Default <c>output</c>.</summary>
    public string OutputDir { get; init; } = "output";

    /// <summary><c>io.dataset_dir</c>: the dataset's folder. Default <c>data</c>.</summary>
    public string DatasetDir { get; init; } = "data";

    /// <summary><c>io.dataset_id</c>: a dataset registered with the reference (<c>pg19</c>, <c>clevr</c>, …). Default <c>pg19</c>.</summary>
    public string DatasetId { get; init; } = "pg19";

    /// <summary><c>io.num_models_to_save</c>: best checkpoints kept. Default 1.</summary>
    public int NumModelsToSave { get; init; } = 1;

    /// <summary><c>io.validate_amount</c>: validations over the run (at least <see cref="NumModelsToSave"/>). Default 10.</summary>
    public int ValidateAmount { get; init; } = 10;

    /// <summary><c>io.log_train_loss_amount</c>: training-loss log lines over the run. Default 100.</summary>
    public int LogTrainLossAmount { get; init; } = 100;

    /// <summary>
    /// <c>resume.checkpoint_file</c>: when set, the YAML gets a <c>resume</c> section (epoch and batch 0, no embedding
    /// migration or renaming) so that the reference's own trainer starts from this checkpoint instead of a fresh model.
    /// Null (default): no <c>resume</c> section.
    /// </summary>
    public string? ResumeCheckpointFile { get; init; }

    /// <summary>
    /// Optimizer steps that train on <see cref="TargetElements"/> elements, the reference's rule: batches =
    /// ceil(target / elements per batch), where a batch counts <paramref name="batchSize"/> elements under the <c>batch</c>
    /// strategy and <paramref name="batchSize"/> × <paramref name="sampleLength"/> bytes under <c>sequence</c>; steps =
    /// batches / <paramref name="gradientAccumulation"/>, at least 1.
    /// </summary>
    public long OptimizerSteps(int batchSize, int gradientAccumulation, long sampleLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(gradientAccumulation, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(sampleLength, 1L);
        long perBatch = TargetElementsStrategy == "batch" ? batchSize : checked(batchSize * sampleLength);
        long batches = TargetElements / perBatch + (TargetElements % perBatch == 0 ? 0 : 1);
        return Math.Max(1, batches / gradientAccumulation);
    }

    /// <summary>Checks the rules the reference's config classes and trainer impose; errors name the YAML key.</summary>
    public ReferenceTrainingSettings Validate(MblmConfig model)
    {
        long max = model.MaxContext;
        if (InputSeqLen is long l && (l < 1 || l > max))
            throw new ConfigException("params.input_seq_len", $"must be in [1, {max}] (the product of seq_lens), got {l}");
        if (TargetElements < 1) throw new ConfigException("train.target_elements", $"must be positive, got {TargetElements}");
        if (TargetElementsStrategy is not ("sequence" or "batch"))
            throw new ConfigException("train.target_elements_strategy", $"must be 'sequence' or 'batch', got '{TargetElementsStrategy}'");
        if (BatchSize < 1) throw new ConfigException("train.batch_size", $"must be positive, got {BatchSize}");
        if (!(LearningRate > 0) || !double.IsFinite(LearningRate)) throw new ConfigException("train.learning_rate", $"must be a positive number, got {LearningRate}");
        if (GradientAccumulateEvery < 1) throw new ConfigException("train.gradient_accumulate_every", $"must be positive, got {GradientAccumulateEvery}");
        if (!(WarmupStepsPerc >= 0 && WarmupStepsPerc <= 1)) throw new ConfigException("train.warmup_steps_perc", $"must be in [0, 1], got {WarmupStepsPerc}");
        if (GradientClipping is double c && !(c > 0 && double.IsFinite(c))) throw new ConfigException("train.gradient_clipping", $"must be a positive number or null, got {c}");
        if (MaxEvalSteps is long m && m < 1) throw new ConfigException("train.max_eval_steps", $"must be positive or null, got {m}");
        foreach (var (key, value) in new[] { ("io.name_model", NameModel), ("io.output_dir", OutputDir), ("io.dataset_dir", DatasetDir), ("io.dataset_id", DatasetId) })
            if (string.IsNullOrWhiteSpace(value)) throw new ConfigException(key, "must not be empty");
        if (NumModelsToSave < 1) throw new ConfigException("io.num_models_to_save", $"must be positive, got {NumModelsToSave}");
        if (ValidateAmount < NumModelsToSave) throw new ConfigException("io.validate_amount", $"must be at least io.num_models_to_save ({NumModelsToSave}), got {ValidateAmount}");
        if (LogTrainLossAmount < 1) throw new ConfigException("io.log_train_loss_amount", $"must be positive, got {LogTrainLossAmount}");
        if (ResumeCheckpointFile is { } r && string.IsNullOrWhiteSpace(r)) throw new ConfigException("resume.checkpoint_file", "must not be empty");
        return this;
    }
}
