using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// MEGABYTE's RMSNorm: <c>x / clamp(‖x‖₂·D^-½, min = 1e-8) · g</c> (the eps clamps the RMS; it is not added under the root).
/// State: <c>g</c> (D).
/// </summary>
internal sealed class ClampRmsNorm : nn.Module<Tensor, Tensor>
{
    // Parameters are looked up by name at use: Module.to(device/dtype) replaces them, so cached references would go stale.
    private Parameter G => get_parameter("g")!;
    private readonly double _scale;

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the norm over the last dimension of width <paramref name="dim"/>; gain initialised to ones.</summary>
    public ClampRmsNorm(long dim) : base("RMSNorm")
    {
        _scale = Math.Pow(dim, -0.5);
        register_parameter("g", new Parameter(ones(dim)));
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // x · (1 / rms): the reciprocal is taken on the (…, 1) tensor, so backward has one activation-sized product fewer
        // than a division would need; the result differs from x / rms by at most one rounding.
        var inv = (linalg.vector_norm(x, 2, new long[] { -1 }, keepdim: true) * _scale).clamp_min(1e-8).reciprocal();
        return (x * inv * G).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The RMSNorm of mamba-ssm: <c>x · rsqrt(mean(x²) + eps) · weight</c> (eps 1e-5). State: <c>weight</c> (D).
/// </summary>
internal sealed class EpsRmsNorm : nn.Module<Tensor, Tensor>
{
    // Parameters are looked up by name at use: Module.to(device/dtype) replaces them, so cached references would go stale.
    private Parameter Weight => get_parameter("weight")!;
    private readonly double _eps;

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the norm over the last dimension of width <paramref name="dim"/>; weight initialised to ones.</summary>
    public EpsRmsNorm(long dim, double eps = 1e-5) : base("RMSNorm")
    {
        _eps = eps;
        register_parameter("weight", new Parameter(ones(dim)));
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var inv = (x.square().mean(new long[] { -1 }, keepdim: true) + _eps).rsqrt();
        return (x * inv * Weight).MoveToOuterDisposeScope();
    }
}
