using System.Runtime.InteropServices;

namespace Mblm.Native;

/// <summary>
/// Returns memory that glibc's allocator holds free back to the OS during long piece-wise computations. Tensors below
/// glibc's (dynamic, up to 32 MB) mmap threshold come from the heap; freed, they stay in the process, and a long run of
/// pieces (the folded training loss at millions of bytes) left about 2 KB of free-but-held heap per byte (measured: an M3
/// step at 1M bytes held 2.0 GB more RSS than after <c>malloc_trim</c>). <see cref="TrimIfSlackAbove"/> trims only when
/// the free heap exceeds a bound, so short runs pay nothing. Nothing is changed process-wide (unlike
/// <see cref="TorchRuntime.TuneAllocator"/>'s keep-all mode, whose choice to keep freed memory is respected: no trimming then).
/// No-op off glibc.
/// </summary>
internal static class NativeHeap
{
    private static int _state; // 0 unknown, 1 available, 2 unavailable

    /// <summary>Free bytes the allocator holds in its arenas (glibc <c>mallinfo2().fordblks</c>), or -1 when unknown.</summary>
    public static long FreeHeldBytes()
    {
        if (_state == 2 || !OperatingSystem.IsLinux()) return -1;
        try
        {
            var info = mallinfo2();
            _state = 1;
            return (long)info.Fordblks;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _state = 2; // not glibc ≥ 2.33
            return -1;
        }
    }

    /// <summary>
    /// Calls <c>malloc_trim(0)</c> when the allocator holds more than <paramref name="bytes"/> free (and allocator tuning
    /// is not keep-all). Returns true when it trimmed.
    /// </summary>
    public static bool TrimIfSlackAbove(long bytes)
    {
        if (TorchRuntime.AllocatorKeepsAll) return false;
        long free = FreeHeldBytes();
        if (free <= bytes) return false;
        malloc_trim(0);
        return true;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint Arena, Ordblks, Smblks, Hblks, Hblkhd, Usmblks, Fsmblks, Uordblks, Fordblks, Keepcost;
    }

    [DllImport("libc", EntryPoint = "mallinfo2")]
    private static extern MallInfo2 mallinfo2();

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int malloc_trim(nuint pad);
}
