namespace Mblm.Training;

/// <summary>
/// A resume found a checkpoint written by a different run (another model config or other trainer settings) in the output
/// directory. The message names the checkpoint and every differing setting with both values; nothing was loaded.
/// </summary>
public sealed class CheckpointMismatchException : InvalidOperationException
{
    /// <summary>The checkpoint folder.</summary>
    public string Checkpoint { get; }

    /// <summary>The settings that differ.</summary>
    public IReadOnlyList<FingerprintDifference> Differences { get; }

    /// <summary>Creates the exception for <paramref name="checkpoint"/>.</summary>
    public CheckpointMismatchException(string checkpoint, IReadOnlyList<FingerprintDifference> differences)
        : base($"cannot resume from checkpoint '{checkpoint}': it was written by a different run: " +
               string.Join("; ", differences.Take(8).Select(d => $"{d.Setting} is {d.Checkpoint} in the checkpoint, {d.Current} in this run")) +
               (differences.Count > 8 ? $"; and {differences.Count - 8} more" : "") +
               " (resume with the same settings, or train into another output directory)")
        => (Checkpoint, Differences) = (checkpoint, differences);
}
