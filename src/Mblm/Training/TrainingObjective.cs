using System.Text.Json.Nodes;
using Mblm.Inference;
using Mblm.Model;
using static TorchSharp.torch;

namespace Mblm.Training;

/// <summary>
/// What the <see cref="Trainer"/> minimises over a batch of samples, and how it validates: next-byte prediction
/// (<see cref="NextByte"/>, the reference's loss, the default) or class prediction through a head
/// (<see cref="ClassificationObjective"/>). The one training loop serves both.
/// </summary>
public abstract class TrainingObjective
{
    private protected TrainingObjective() { }

    /// <summary>The reference's next-byte loss under the samples' loss masks; validation in bits per byte.</summary>
    public static TrainingObjective NextByte { get; } = new NextByteObjective();

    /// <summary>Parameters trained besides the model's (a head), saved in checkpoints as <c>head.safetensors</c>; null when none.</summary>
    public virtual nn.Module? Head => null;

    /// <summary>
    /// The loss of a batch of <paramref name="samples"/> (a scalar, float32) for <paramref name="model"/>. The objective
    /// collates the samples itself (<see cref="Batching"/>), so one that places them differently (a patch shift) pads once.
    /// </summary>
    internal abstract Tensor Loss(MblmModel model, IReadOnlyList<ByteSample> samples);

    /// <summary>The validation figure (lower is better) over the first <paramref name="maxSamples"/> samples of epoch 0.</summary>
    internal abstract double Validate(MblmModel model, ISampleSource validation, int batchSize, long? maxSamples);

    /// <summary>Whether <see cref="Validate"/> gives bits per byte (else a classification cross-entropy in nats).</summary>
    internal virtual bool ValidatesBitsPerByte => false;

    /// <summary>The objective's settings in a run fingerprint (null for next-byte, so older checkpoints still match).</summary>
    internal virtual JsonObject? Fingerprint => null;

    private sealed class NextByteObjective : TrainingObjective
    {
        internal override Tensor Loss(MblmModel model, IReadOnlyList<ByteSample> samples)
        {
            var (ids, mask) = Batching.Collate(samples, model.Config.PadTokenId, model.Device);
            return model.Loss(ids, mask);
        }

        internal override double Validate(MblmModel model, ISampleSource validation, int batchSize, long? maxSamples) =>
            Evaluator.Evaluate(model, validation, batchSize, maxSamples).BitsPerByte;

        internal override bool ValidatesBitsPerByte => true;
    }
}

/// <summary>
/// Classification: every sample carries a class (<see cref="ByteSample.Label"/>, 0-based); the model's pooled features
/// (<see cref="MblmModel.PooledFeatures"/>, over the sample's whole ids) go through <see cref="Head"/> into a K-way
/// cross-entropy with label smoothing, plus <see cref="NextByteWeight"/> times the next-byte loss of the same forward
/// (under the samples' loss masks) as an auxiliary language-modelling term. Validation: the mean class cross-entropy.
/// </summary>
public sealed class ClassificationObjective : TrainingObjective
{
    private readonly PooledClassifierHead _head;

    /// <summary>An objective training <paramref name="head"/> (and the model under it).</summary>
    /// <param name="head">The head; its <see cref="PooledClassifierHead.Classes"/> is K.</param>
    /// <param name="labelSmoothing">Label smoothing of the cross-entropy, in [0, 1).</param>
    /// <param name="nextByteWeight">Weight of the auxiliary next-byte loss, ≥ 0 (0: none, and the logits are not computed).</param>
    /// <param name="randomPatchShift">
    /// Shift each training row's patch phase by a random 0 to Q−1 pad tokens before it (Q: the model's patch size; no
    /// more than the context leaves), drawn from the CPU generator (so a resume draws the same). The pooled features
    /// leave the pads out, so only where the row's bytes fall in their patches changes. Scoring never shifts.
    /// </param>
    public ClassificationObjective(PooledClassifierHead head, double labelSmoothing = 0, double nextByteWeight = 0, bool randomPatchShift = false)
    {
        RandomPatchShift = randomPatchShift;
        _head = head ?? throw new ArgumentNullException(nameof(head));
        if (labelSmoothing is < 0 or >= 1 || double.IsNaN(labelSmoothing))
            throw new ArgumentOutOfRangeException(nameof(labelSmoothing), $"label smoothing must be in [0, 1) (got {labelSmoothing})");
        if (!(nextByteWeight >= 0) || double.IsInfinity(nextByteWeight))
            throw new ArgumentOutOfRangeException(nameof(nextByteWeight), $"the next-byte weight must be finite and ≥ 0 (got {nextByteWeight})");
        (LabelSmoothing, NextByteWeight) = (labelSmoothing, nextByteWeight);
    }

    /// <inheritdoc/>
    public override nn.Module? Head => _head;

    /// <summary>Label smoothing of the class cross-entropy.</summary>
    public double LabelSmoothing { get; }

    /// <summary>Weight of the auxiliary next-byte loss.</summary>
    public double NextByteWeight { get; }

    /// <summary>Whether training rows are shifted by a random number of pad tokens (see the constructor).</summary>
    public bool RandomPatchShift { get; }

    internal override JsonObject Fingerprint
    {
        get
        {
            var f = new JsonObject
            {
                ["kind"] = "classification", ["classes"] = _head.Classes, ["dropout"] = _head.DropoutRate,
                ["label_smoothing"] = LabelSmoothing, ["next_byte_weight"] = NextByteWeight,
            };
            if (RandomPatchShift) f["random_patch_shift"] = true; // only when on: checkpoints of earlier runs still resume
            return f;
        }
    }

    internal override Tensor Loss(MblmModel model, IReadOnlyList<ByteSample> samples)
    {
        using var scope = NewDisposeScope();
        var (lengths, labels) = Targets(samples, _head.Classes, model.Device);
        // Each row behind its pads when shifted (starts drawn from the CPU generator), else at the batch's start.
        long[]? starts = RandomPatchShift && model.Config.PatchSize > 1 ? RandomStarts(model.Config, lengths) : null;
        var (ids, mask) = Batching.CollateShifted(samples, model.Config.PadTokenId, model.Device, starts);
        Tensor pooled, aux;
        if (NextByteWeight > 0)
        {
            (pooled, aux) = model.PooledFeaturesAndLossOf(ids, lengths, mask, starts);
        }
        else
        {
            pooled = model.PooledFeaturesOf(ids, lengths, starts);
            aux = zeros(1, device: model.Device);
        }
        var logits = _head.forward(pooled);
        var ce = nn.functional.cross_entropy(logits, labels, label_smoothing: LabelSmoothing);
        var loss = NextByteWeight > 0 ? ce + aux.to_type(ce.dtype) * NextByteWeight : ce;
        return loss.MoveToOuterDisposeScope();
    }

    internal override double Validate(MblmModel model, ISampleSource validation, int batchSize, long? maxSamples)
    {
        long count = Math.Min(validation.Count(0), maxSamples ?? long.MaxValue);
        var samples = new List<ByteSample>();
        for (long i = 0; i < count; i++) samples.Add(validation.Get(0, i));
        if (samples.Count == 0) return double.NaN;
        var probabilities = PooledClassScorer.Probabilities(model, _head, samples.Select(s => s.Ids).ToList(), batchSize);
        double nats = 0;
        for (int i = 0; i < samples.Count; i++)
            nats -= Math.Log(Math.Max(probabilities[i][CheckLabel(samples[i], _head.Classes)], 1e-12f));
        return nats / samples.Count;
    }

    // Random patch phases for a batch: starts drawn in [0, Q) from the CPU generator, each capped so the row still fits the context.
    private static long[] RandomStarts(Config.MblmConfig config, long[] lengths)
    {
        long[] draws;
        using (var r = randint(config.PatchSize, lengths.Length, dtype: int64)) draws = r.data<long>().ToArray();
        return draws.Select((d, b) => Math.Max(0, Math.Min(d, config.MaxContext - lengths[b]))).ToArray();
    }

    private static int CheckLabel(ByteSample sample, long classes) => sample.Label >= 0 && sample.Label < classes ? sample.Label
        : throw new ArgumentException($"a classification sample has label {sample.Label}; the head has {classes} classes (labels 0..{classes - 1})");

    // Lengths (B) and labels (B) of a batch, built on the host and moved once.
    private static (long[] Lengths, Tensor Labels) Targets(IReadOnlyList<ByteSample> samples, long classes, Device device)
    {
        var lengths = new long[samples.Count];
        var labels = new long[samples.Count];
        for (int i = 0; i < samples.Count; i++) (lengths[i], labels[i]) = (samples[i].Ids.Length, CheckLabel(samples[i], classes));
        return (lengths, tensor(labels).to(device));
    }
}
