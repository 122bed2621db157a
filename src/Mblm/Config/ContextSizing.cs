namespace Mblm.Config;

/// <summary>
/// Sizes a model's context to its data: a base config (a preset) keeps its widths, depths, blocks and patch sizes; only
/// the number of global patches (<c>seq_lens[0]</c>) changes, so that the context (Π seq_lens) is the longest sample
/// rounded up to the patch grid (a multiple of <see cref="MblmConfig.PatchSize"/>), at most a cap rounded down to the grid.
/// Pure: no data, no allocation of a model.
/// </summary>
public static class ContextSizing
{
    /// <summary>
    /// The config of <paramref name="preset"/> with <c>seq_lens[0]</c> = ⌈min(<paramref name="longestSample"/>,
    /// <paramref name="maxContext"/>) / patch⌉ (at least 1), where patch = <see cref="MblmConfig.PatchSize"/>; when the
    /// longest sample exceeds the cap, the context is the cap rounded down to the patch grid. Only a stage-0 fixed positional
    /// embedding depends on <c>seq_lens[0]</c>; every other weight keeps the preset's shape (knowledge transfer between
    /// sizes works).
    /// </summary>
    /// <param name="longestSample">Tokens in the longest training sample (0 or more).</param>
    /// <param name="preset">The base config (validated here).</param>
    /// <param name="maxContext">The largest context to size to; at least one patch.</param>
    /// <exception cref="ArgumentOutOfRangeException">A negative length, or a cap smaller than one patch.</exception>
    public static MblmConfig For(long longestSample, MblmConfig preset, long maxContext)
    {
        ArgumentNullException.ThrowIfNull(preset);
        preset.Validate();
        long patch = preset.PatchSize;
        ArgumentOutOfRangeException.ThrowIfNegative(longestSample);
        if (maxContext < patch || maxContext > MblmConfig.MaxContextLimit)
            throw new ArgumentOutOfRangeException(nameof(maxContext), maxContext,
                $"the largest context must hold at least one patch of {patch} tokens and at most {MblmConfig.MaxContextLimit:N0}");
        long patches = longestSample <= maxContext
            ? Math.Max(1, (longestSample + patch - 1) / patch)
            : maxContext / patch;
        if (patches > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(maxContext), maxContext, $"gives more than {int.MaxValue} global patches");
        var seqLens = preset.SeqLens.ToArray();
        seqLens[0] = (int)patches;
        return (preset with { SeqLens = seqLens }).Validate();
    }
}
