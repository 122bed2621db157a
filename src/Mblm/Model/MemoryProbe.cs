using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// Diagnostics hook for memory measurements (the long-context benchmark's <c>--breakdown</c>): when <see cref="Hook"/> is
/// set, the folded training loss and the checkpoint backward report phase boundaries with a label and, where one
/// exists, the tensor just produced. Null (the default) costs one field read per phase.
/// </summary>
internal static class MemoryProbe
{
    /// <summary>Called with a phase label and an optional tensor; null when nobody listens.</summary>
    internal static Action<string, Tensor?>? Hook;

    /// <summary>Reports a phase boundary.</summary>
    internal static void At(string label, Tensor? tensor = null) => Hook?.Invoke(label, tensor);
}
