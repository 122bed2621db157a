using System.Reflection;
using static TorchSharp.torch;

namespace Mblm.Weights;

/// <summary>
/// Reads the tensor descriptors that TorchSharp.PyBridge 1.4.4's unpickler returns in its descriptor mode
/// (<c>skipTensorRead</c>): instances of its internal <c>PyTorchUnpickler.TensorConstructorArgs</c>, whose public
/// properties hold the storage's archive index, dtype, storage offset, shape and stride, and an open stream on the storage
/// entry (disposed here; the checked data is read again from this library's own view of the zip).
/// </summary>
internal static class PyBridgeDescriptor
{
    private const string TypeName = "TorchSharp.PyBridge.PyTorchUnpickler+TensorConstructorArgs";

    /// <summary>A descriptor's fields.</summary>
    public sealed record Fields(int Index, ScalarType DType, long Offset, long[] Shape, long[] Stride);

    /// <summary>The fields of <paramref name="value"/> when it is a PyBridge tensor descriptor; null for any other value.</summary>
    public static Fields? Read(object? value)
    {
        if (value?.GetType() is not { FullName: TypeName } type) return null;
        object Get(string property) =>
            type.GetProperty(property, BindingFlags.Public | BindingFlags.Instance)?.GetValue(value)
            ?? throw new InvalidOperationException($"TorchSharp.PyBridge's tensor descriptor has no value for '{property}': this library needs TorchSharp.PyBridge 1.4.4");
        return new Fields((int)Get("ArchiveIndex"), (ScalarType)Get("DType"), (int)Get("StorageOffset"), (long[])Get("Shape"), (long[])Get("Stride"));
    }

    /// <summary>Closes the storage stream a descriptor holds open (nothing for other values).</summary>
    public static void Dispose(object? value)
    {
        if (value?.GetType() is { FullName: TypeName } type)
            (type.GetProperty("Data", BindingFlags.Public | BindingFlags.Instance)?.GetValue(value) as IDisposable)?.Dispose();
    }
}
