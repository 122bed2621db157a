using Microsoft.ML;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.MLNet.Hosting;

/// <summary>The device ML.NET's context asks for: CUDA device <see cref="MLContext.GpuDeviceId"/> when set and available, else the CPU (or an error when <see
/// cref="MLContext.FallbackToCpu"/> is false).</summary>
internal static class DeviceChoice
{
    public static Device For(IHostEnvironment environment)
    {
        var (gpu, fallbackToCpu) = HostEnvironments.DeviceSettings(environment);
        if (gpu is not int id) return CPU;
        if (cuda.is_available() && id >= 0 && id < cuda.device_count()) return new Device(DeviceType.CUDA, id);
        if (!fallbackToCpu)
            throw new InvalidOperationException($"MLContext.GpuDeviceId is {id} but no such CUDA device is available " +
                $"({(cuda.is_available() ? cuda.device_count() + " devices" : "CUDA not available: build with -p:MblmTorchBackend=cuda")}) and MLContext.FallbackToCpu is false");
        return CPU;
    }
}
