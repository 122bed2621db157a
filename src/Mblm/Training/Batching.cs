using static TorchSharp.torch;

namespace Mblm.Training;

/// <summary>Turns samples into padded batch tensors: the one padding routine of training and scoring.</summary>
public static class Batching
{
    /// <summary>Right-pads samples to the longest with <paramref name="padId"/> (mask 0 there): ids (B, L) int64, mask (B, L) float32.</summary>
    public static (Tensor Ids, Tensor Mask) Collate(IReadOnlyList<ByteSample> samples, long padId, Device device) => CollateShifted(samples, padId, device, null);

    // With starts: row b begins after starts[b] pad tokens (loss mask 0 there).
    internal static (Tensor Ids, Tensor Mask) CollateShifted(IReadOnlyList<ByteSample> samples, long padId, Device device, long[]? starts)
    {
        if (samples.Count == 0) throw new ArgumentException("a batch needs at least one sample", nameof(samples));
        int Start(int b) => starts is null ? 0 : (int)starts[b];
        int length = Enumerable.Range(0, samples.Count).Max(b => Start(b) + samples[b].Ids.Length);
        if (length == 0) throw new ArgumentException("every sample of the batch is empty; a batch needs at least one id", nameof(samples));
        var ids = new long[samples.Count * length];
        var mask = new float[samples.Count * length];
        Array.Fill(ids, padId);
        for (int b = 0; b < samples.Count; b++)
        {
            if (samples[b].LossMask.Length != samples[b].Ids.Length)
                throw new ArgumentException($"sample {b}: loss mask length {samples[b].LossMask.Length} differs from its {samples[b].Ids.Length} ids");
            Array.Copy(samples[b].Ids, 0, ids, b * length + Start(b), samples[b].Ids.Length);
            Array.Copy(samples[b].LossMask, 0, mask, b * length + Start(b), samples[b].LossMask.Length);
        }
        return (tensor(ids, new long[] { samples.Count, length }).to(device), tensor(mask, new long[] { samples.Count, length }).to(device));
    }
}
