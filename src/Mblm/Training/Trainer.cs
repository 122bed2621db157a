using System.Diagnostics;
using System.Text.Json.Nodes;
using Mblm.Model;
using Mblm.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Training;

/// <summary>
/// The one training loop (CLI and ML.NET stages use it): Adam(β 0.9/0.95) or AdamW, linear warm-up then cosine, gradient
/// accumulation, clipping, non-finite-loss skipping, periodic validation, atomic checkpoints and exact resume.
/// Deterministic on CPU for a given model initialisation, data and <see cref="TrainerOptions.Seed"/>.
/// </summary>
public sealed class Trainer
{
    private readonly MblmModel _model;

    /// <summary>The options (immutable).</summary>
    public TrainerOptions Options { get; }

    /// <summary>What is minimised: <see cref="TrainingObjective.NextByte"/> unless given.</summary>
    public TrainingObjective Objective { get; }

    /// <summary>Creates a trainer for <paramref name="model"/> (and the objective's head, trained with it).</summary>
    public Trainer(MblmModel model, TrainerOptions options, TrainingObjective? objective = null)
    {
        _model = model;
        Options = options.Validate();
        Objective = objective ?? TrainingObjective.NextByte;
    }

    /// <summary>
    /// Trains for <see cref="TrainerOptions.Steps"/> optimiser steps. With <paramref name="resume"/> and an output directory,
    /// continues this run from the newest complete checkpoint there (weights, optimiser, schedule, RNG and data position),
    /// or starts fresh when there is none. A checkpoint written by a different run (its model config or trainer settings
    /// differ; see <see cref="CheckpointMismatchException"/>) is refused; a damaged one (truncated or corrupt files) is
    /// skipped with a warning for the previous one. Leftover temporary files of a killed run are removed first. Warnings are
    /// reported through <paramref name="progress"/> and returned in <see cref="TrainingResult.Warnings"/>. Writes
    /// <c>weights.safetensors</c> to the output directory at the end. <paramref name="cancellationToken"/> is checked between
    /// steps: a cancelled run throws <see cref="OperationCanceledException"/> within one step, after writing a checkpoint of
    /// the last step taken when there is an output directory (a resume continues from it).
    /// </summary>
    public TrainingResult Train(ISampleSource train, ISampleSource? validation = null, IProgress<TrainingProgress>? progress = null,
        bool resume = false, CancellationToken cancellationToken = default)
    {
        using var run = new Run(_model, Options, Objective, resume, progress);
        return run.Execute(train, validation, progress, cancellationToken);
    }

    // One training run: the optimiser, schedule and data position (fresh or restored from a checkpoint), and the bf16
    // working copy when asked for.
    private sealed class Run : IDisposable
    {
        private readonly MblmModel _model;
        private readonly TrainerOptions _o;
        private readonly TrainingObjective _objective;
        private readonly nn.Module? _head;
        private readonly List<TorchSharp.Modules.Parameter> _parameters; // the model's, then the head's
        private optim.Optimizer _optimizer;
        private readonly LearningRateSchedule _schedule;
        private readonly long? _resumedFrom;
        private readonly JsonObject _fingerprint;
        private readonly List<string> _warnings = [];
        private readonly MblmModel? _working;  // bf16: forward/backward run here; the fp32 master keeps weights and optimiser state
        private readonly List<TorchSharp.Modules.Parameter>? _workingParameters;
        private DataPosition _position = new(0, 0);
        private long _step;
        private ValidationRecord? _resumedValidation;          // the early-stopping record of the checkpoint resumed from
        private Dictionary<string, Tensor>? _resumedBest;     // that record's best weights (RestoreBestWeights), owned here

        public Run(MblmModel model, TrainerOptions o, TrainingObjective objective, bool resume, IProgress<TrainingProgress>? progress)
        {
            (_model, _o, _objective, _head) = (model, o, objective, objective.Head);
            if (o.Threads is int threads) set_num_threads(threads);
            _parameters = [.. model.parameters(), .. _head?.parameters() ?? []];
            _optimizer = NewOptimizer();
            _schedule = o.LearningRates;
            _fingerprint = RunFingerprint.Of(model.Config, o);
            if (objective.Fingerprint is { } objectiveFingerprint) _fingerprint["objective"] = objectiveFingerprint;
            if (o.OutputDirectory is not null)
            {
                Directory.CreateDirectory(o.OutputDirectory);
                var removed = CheckpointStore.RemoveTemporaryFiles(o.OutputDirectory);
                if (removed.Count > 0)
                    Warn(progress, $"removed {removed.Count} temporary file(s) left by an interrupted run: {string.Join(", ", removed.Select(Path.GetFileName))}");
            }
            if (resume && o.OutputDirectory is not null && Resume(o.OutputDirectory, progress) is long step)
            {
                _resumedFrom = step;
            }
            else
            {
                manual_seed(o.Seed);
            }
            model.train();
            _head?.train();
            if (o.Bf16)
            {
                // Building the copy draws initial weights; keep the RNG stream as it was so runs and resumes stay identical.
                using var rng = get_rng_state().DetachFromDisposeScope();
                _working = new MblmModel(model.Config);
                set_rng_state(rng);
                _working.to(ScalarType.BFloat16).to(model.Device);
                _working.train();
                _workingParameters = _working.parameters().ToList();
            }
        }

        private optim.Optimizer NewOptimizer() => _o.AdamW
            ? optim.AdamW(_parameters, lr: _o.LearningRate, beta1: _o.Beta1, beta2: _o.Beta2, weight_decay: _o.WeightDecay)
            : optim.Adam(_parameters, lr: _o.LearningRate, beta1: _o.Beta1, beta2: _o.Beta2);

        private void Warn(IProgress<TrainingProgress>? progress, string warning)
        {
            _warnings.Add(warning);
            progress?.Report(new TrainingProgress(_step, _o.Steps, double.NaN, 0, 0, TimeSpan.Zero, null, warning));
        }

        // Newest complete checkpoint first; damaged ones are skipped (with a warning) for the one before. A checkpoint of
        // another run stops the resume (CheckpointMismatchException). Returns the step resumed from, or null for a fresh start.
        private long? Resume(string outputDirectory, IProgress<TrainingProgress>? progress)
        {
            var candidates = CheckpointStore.Complete(outputDirectory);
            string? skipped = null;
            foreach (string folder in candidates)
            {
                var notes = new List<string>();
                try
                {
                    (_step, _position, _resumedValidation) = CheckpointStore.Load(folder, _model, _head, _optimizer, _parameters, _fingerprint, notes);
                    foreach (string note in notes) Warn(progress, note);
                    if (skipped is not null) Warn(progress, $"resuming from the previous complete checkpoint '{folder}' (step {_step})");
                    if (_o.RestoreBestWeights && _resumedValidation is { } record) _resumedBest = BestWeights(outputDirectory, record.BestStep, progress);
                    return _step;
                }
                catch (CheckpointMismatchException e) when (_o.Schedule == LearningRateScheduleKind.WarmupStableDecay
                                                            && e.Differences.All(d => d.Setting == "trainer.steps"))
                {
                    // A run of another length, and this checkpoint is past the decay start of that run or of this one: an
                    // older checkpoint (the one taken where that run's decay started) continues it.
                    _optimizer = NewOptimizer();
                    (_step, _position, _resumedValidation) = (0, new DataPosition(0, 0), null);
                    Warn(progress, $"checkpoint '{folder}' is in the decay of a run of another length: an earlier one is used");
                }
                catch (Exception e) when (e is not (CheckpointMismatchException or OutOfMemoryException or OperationCanceledException))
                {
                    // Nothing of the model or the generator has changed; the optimiser may hold part of the state: replace it.
                    _optimizer = NewOptimizer();
                    (_step, _position, _resumedValidation) = (0, new DataPosition(0, 0), null);
                    skipped = folder;
                    Warn(progress, $"checkpoint '{folder}' is damaged and was skipped: {e.Message.ReplaceLineEndings(" ")}");
                }
            }
            if (skipped is not null) Warn(progress, "no usable checkpoint left: training starts from step 0");
            return null;
        }

        // The best validation's weights from that step's checkpoint; null (with a warning) when it is gone or damaged.
        private Dictionary<string, Tensor>? BestWeights(string outputDirectory, long bestStep, IProgress<TrainingProgress>? progress)
        {
            string folder = Path.Combine(outputDirectory, "checkpoints", CheckpointStore.FolderName(bestStep));
            try { return CheckpointStore.LoadWeights(folder, _model, _head, _fingerprint); }
            catch (Exception e) when (e is not (OutOfMemoryException or OperationCanceledException))
            {
                Warn(progress, $"the best validation's checkpoint '{folder}' cannot be read ({e.Message.ReplaceLineEndings(" ")}): " +
                               "unless a later validation improves on it, the model returned holds the last step's weights");
                return null;
            }
        }

        public TrainingResult Execute(ISampleSource train, ISampleSource? validation, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
        {
            var o = _o;
            var order = new SampleOrder(train, o.Shuffle, o.Seed);
            var clock = Stopwatch.StartNew();
            long bytesSeen = 0, stepsThisRun = 0;
            double lastLoss = double.NaN;
            double? lastValidation = null;
            int nonFinite = 0;
            long savedStep = _resumedFrom ?? -1;
            (long Step, double Value) best = (-1, double.PositiveInfinity);
            int sinceBest = 0;
            bool stoppedEarly = false;
            Dictionary<string, Tensor>? bestState = _resumedBest;
            _resumedBest = null;
            if (_resumedValidation is { } resumed)
            {
                // A resumed run goes on from its early-stopping record; one that stopped early stays stopped unless the
                // patience has grown past the validations it waited.
                (best, sinceBest, lastValidation) = ((resumed.BestStep, resumed.BestValue), resumed.SinceBest, resumed.LastValue);
                stoppedEarly = resumed.StoppedEarly && o.EarlyStoppingPatience > 0 && sinceBest >= o.EarlyStoppingPatience;
                if (stoppedEarly)
                    progress?.Report(new TrainingProgress(_step, o.Steps, double.NaN, 0, 0, TimeSpan.Zero, null,
                        $"the run resumed had stopped early at step {_step} (best validation at step {best.Step}): nothing left to train"));
            }
            ValidationRecord? Record() => best.Step < 0 ? null : new ValidationRecord(best.Step, best.Value, sinceBest, lastValidation, stoppedEarly);
            try
            {
                while (_step < o.Steps && !stoppedEarly)
                {
                    if (cancellationToken.IsCancellationRequested)
                    {
                        // Stopped between steps: the steps taken since the last checkpoint are kept, so a resume continues here.
                        if (o.OutputDirectory is not null && _step > 0 && _step != savedStep)
                            CheckpointStore.Save(o.OutputDirectory, _step, _position, _model, _head, _optimizer, _fingerprint, Record());
                        cancellationToken.ThrowIfCancellationRequested();
                    }
                    double lr = _schedule.At(_step);
                    foreach (var group in _optimizer.ParamGroups) group.LearningRate = lr;
                    var (lossValue, bytes) = ForwardBackward(order);
                    bytesSeen += bytes;
                    if (!double.IsFinite(lossValue))
                    {
                        _optimizer.zero_grad();
                        if (++nonFinite >= o.MaxConsecutiveNonFinite)
                            throw new InvalidOperationException($"training stopped: {nonFinite} non-finite losses in a row at step {_step} (lower LearningRate or check the data)");
                        progress?.Report(new TrainingProgress(_step, o.Steps, lossValue, lr, 0, TimeSpan.Zero, null, $"non-finite loss at step {_step}: step skipped"));
                        continue;
                    }
                    nonFinite = 0;
                    Update();
                    _step++;
                    stepsThisRun++;
                    lastLoss = lossValue;

                    double seconds = clock.Elapsed.TotalSeconds;
                    var eta = TimeSpan.FromSeconds(seconds / stepsThisRun * (o.Steps - _step));
                    bool validate = validation is not null && (_step == o.Steps || (o.ValidateEvery > 0 && _step % o.ValidateEvery == 0));
                    bool newBest = false;
                    if (validate)
                    {
                        lastValidation = _objective.Validate(_model, validation!, o.BatchSize, o.MaxValidationSamples);
                        // Only a finite value becomes the best (NaN compares false with everything: it would stay best for good).
                        if (lastValidation is double v && double.IsFinite(v) && (v < best.Value || best.Step < 0))
                        {
                            (best, sinceBest, newBest) = ((_step, v), 0, true);
                            if (o.RestoreBestWeights) Remember(ref bestState);
                        }
                        else sinceBest++;
                        stoppedEarly = o.EarlyStoppingPatience > 0 && sinceBest >= o.EarlyStoppingPatience && _step < o.Steps;
                    }
                    bool bitsPerByte = _objective.ValidatesBitsPerByte;
                    progress?.Report(new TrainingProgress(_step, o.Steps, lossValue, lr, bytesSeen / Math.Max(seconds, 1e-9), eta,
                        validate && bitsPerByte ? lastValidation : null, null, validate && !bitsPerByte ? lastValidation : null));

                    // Warm-up–stable–decay also checkpoints where the decay starts: a longer run continues from there.
                    // So do a new best (its weights are what a resumed run restores) and an early stop (a resume stays stopped).
                    bool decayStart = o.Schedule == LearningRateScheduleKind.WarmupStableDecay && _step == _schedule.DecayStart;
                    if (o.OutputDirectory is not null && ((o.CheckpointEvery > 0 && _step % o.CheckpointEvery == 0) || _step == o.Steps || decayStart
                                                          || (newBest && o.RestoreBestWeights) || stoppedEarly))
                    {
                        CheckpointStore.Save(o.OutputDirectory, _step, _position, _model, _head, _optimizer, _fingerprint, Record());
                        savedStep = _step;
                    }
                    if (stoppedEarly)
                    {
                        progress?.Report(new TrainingProgress(_step, o.Steps, lossValue, lr, 0, TimeSpan.Zero, null,
                            $"stopped early at step {_step}: {sinceBest} validations without improving on step {best.Step}'s"));
                        break;
                    }
                }
            }
            catch
            {
                // The copy of the best weights is native memory: not left to the finaliser when training fails.
                if (bestState is not null) foreach (var t in bestState.Values) t.Dispose();
                throw;
            }
            long? bestStep = null;
            if (bestState is not null)
            {
                Restore(bestState);
                (bestStep, lastValidation) = (best.Step, best.Value);
            }
            if (o.OutputDirectory is not null)
            {
                ModelWeights.Save(_model, Path.Combine(o.OutputDirectory, "weights.safetensors"));
                if (_head is not null) ModelWeights.Save(_head, Path.Combine(o.OutputDirectory, CheckpointStore.HeadFile));
            }
            bool bpb = _objective.ValidatesBitsPerByte;
            return new TrainingResult(_step, lastLoss, bpb ? lastValidation : null, _resumedFrom)
            {
                Warnings = _warnings.ToList(), ValidationLoss = bpb ? null : lastValidation, BestStep = bestStep, StoppedEarly = stoppedEarly,
            };
        }

        // A copy of the model's (and head's) state, on the device, outside any dispose scope (cloned without gradients).
        private void Remember(ref Dictionary<string, Tensor>? state)
        {
            if (state is not null) foreach (var t in state.Values) t.Dispose();
            state = [];
            using var noGrad = no_grad();
            foreach (var (prefix, module) in CheckpointStore.StateParts(_model, _head))
                foreach (var (name, value) in module.state_dict()) state[prefix + name] = value.clone().DetachFromDisposeScope();
        }

        private void Restore(Dictionary<string, Tensor> state)
        {
            using var noGrad = no_grad();
            foreach (var (prefix, module) in CheckpointStore.StateParts(_model, _head))
                foreach (var (name, value) in module.state_dict()) value.copy_(state[prefix + name]);
            foreach (var t in state.Values) t.Dispose();
        }

        // Zeroes gradients, runs the step's micro-batches forward and backward; returns the mean loss and the bytes seen.
        private (double Loss, long Bytes) ForwardBackward(SampleOrder order)
        {
            _optimizer.zero_grad();
            if (_working is not null)
            {
                using var noGrad = no_grad();
                _working.zero_grad();
                for (int i = 0; i < _workingParameters!.Count; i++) _workingParameters[i].copy_(_parameters[i]);
            }
            using var scope = NewDisposeScope();
            long bytes = 0;
            Tensor total = zeros(1, device: _model.Device);
            for (int micro = 0; micro < _o.GradientAccumulation; micro++)
            {
                var samples = new List<ByteSample>();
                while (samples.Count < _o.BatchSize) samples.Add(order.Next(ref _position));
                var loss = _objective.Loss(_working ?? _model, samples).to_type(ScalarType.Float32);
                (loss / _o.GradientAccumulation).backward();
                total = total + loss.detach();
                bytes += samples.Sum(s => (long)s.Ids.Length);
            }
            return (total.item<float>() / _o.GradientAccumulation, bytes); // one host sync per optimiser step
        }

        // Moves bf16 gradients onto the master weights, clips, and steps the optimiser.
        private void Update()
        {
            if (_working is not null)
                using (no_grad())
                using (NewDisposeScope())
                    for (int i = 0; i < _workingParameters!.Count; i++)   // the head (after the model's) trains in fp32 directly
                        if (_workingParameters[i].grad is { } g) _parameters[i].grad = g.to_type(ScalarType.Float32);
            if (_o.GradientClipping is double clip) nn.utils.clip_grad_norm_(_parameters, clip);
            _optimizer.step();
        }

        public void Dispose()
        {
            _working?.Dispose();
            if (_resumedBest is not null) foreach (var t in _resumedBest.Values) t.Dispose();
        }
    }
}

/// <summary>Where the trainer is in the data: epoch and index within the epoch's order.</summary>
public readonly record struct DataPosition(int Epoch, long Index);

/// <summary>Sequential or seeded-shuffled visiting order over a sample source, epoch after epoch.</summary>
internal sealed class SampleOrder(ISampleSource source, bool shuffle, long seed)
{
    private int _permutationEpoch = -1;
    private long[]? _permutation;

    public ByteSample Next(ref DataPosition position)
    {
        for (int guard = 0; position.Index >= source.Count(position.Epoch); guard++)
        {
            if (guard > 1 && source.Count(position.Epoch) == 0)
                throw new InvalidOperationException("the training data has no complete sample (file shorter than one window?)");
            position = new DataPosition(position.Epoch + 1, 0);
        }
        long index = position.Index;
        if (shuffle)
        {
            if (_permutationEpoch != position.Epoch)
            {
                var rng = new Random(unchecked((int)(seed * 1_000_003 + position.Epoch)));
                _permutation = Enumerable.Range(0, (int)source.Count(position.Epoch)).Select(i => (long)i).ToArray();
                rng.Shuffle(_permutation);
                _permutationEpoch = position.Epoch;
            }
            index = _permutation![index];
        }
        var sample = source.Get(position.Epoch, index);
        position = position with { Index = position.Index + 1 };
        return sample;
    }
}
