using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Runtime;

namespace Mblm.MLNet.Hosting;

/// <summary>
/// The ML.NET environment behind a catalog and its device settings. ML.NET's catalogs hold the context's environment, not
/// the <see cref="MLContext"/>, and expose it only to ML.NET's own assemblies (<c>IInternalCatalog.Environment</c>); an
/// extension method on <c>mlContext.MulticlassClassification.Trainers</c> reads it by reflection (the interface has the
/// same name and member in Microsoft.ML 5.0 and 6.0, and a test run on both covers the lookup). Through it, Fit keeps the context's seed, log and GPU settings.
/// </summary>
internal static class HostEnvironments
{
    /// <summary>The environment a catalog (or catalog instantiator) was created with.</summary>
    public static IHostEnvironment Of(object catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        var contract = catalog.GetType().GetInterfaces().FirstOrDefault(i => i.FullName == "Microsoft.ML.Data.IInternalCatalog");
        return contract?.GetProperty("Environment")?.GetValue(catalog) as IHostEnvironment
               ?? throw new NotSupportedException($"cannot find the MLContext behind {catalog.GetType().Name} (Microsoft.ML 5.0 and 6.0 have it; this version of Microsoft.ML does not); " +
                                                  "use mlContext.Mblm() instead");
    }

    /// <summary><see cref="MLContext.GpuDeviceId"/> and <see cref="MLContext.FallbackToCpu"/> of a context or of the environment behind one.</summary>
    public static (int? GpuDeviceId, bool FallbackToCpu) DeviceSettings(IHostEnvironment environment)
    {
        if (environment is MLContext context) return (context.GpuDeviceId, context.FallbackToCpu);
        var settings = environment.GetType().GetInterfaces().FirstOrDefault(i => i.Name == "IHostEnvironmentInternal");
        if (settings is null) return (null, true);
        object? Read(string name) => settings.GetProperty(name, BindingFlags.Public | BindingFlags.Instance)?.GetValue(environment);
        return (Read("GpuDeviceId") as int?, Read("FallbackToCpu") as bool? ?? true);
    }
}
