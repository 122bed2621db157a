using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// MEGABYTE's RMSNorm: <c>x / clamp(‖x‖₂·D^-½, min = 1e-8) · g</c> (the eps clamps the RMS; it is not added under the root).
/// State: <c>g</c> (D).
/// </summary>
public sealed class ClampRmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter _g;
    private readonly double _scale;

    /// <summary>Names are registered explicitly (see NamingNote.cs); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the norm over the last dimension of width <paramref name="dim"/>; gain initialised to ones.</summary>
    public ClampRmsNorm(long dim) : base("RMSNorm")
    {
        _scale = Math.Pow(dim, -0.5);
        _g = new Parameter(ones(dim));
        register_parameter("g", _g);
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var rms = (linalg.vector_norm(x, 2, new long[] { -1 }, keepdim: true) * _scale).clamp_min(1e-8);
        return (x / rms * _g).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The RMSNorm of mamba-ssm: <c>x · rsqrt(mean(x²) + eps) · weight</c> (eps 1e-5). State: <c>weight</c> (D).
/// </summary>
public sealed class EpsRmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter _weight;
    private readonly double _eps;

    /// <summary>Names are registered explicitly (see NamingNote.cs); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the norm over the last dimension of width <paramref name="dim"/>; weight initialised to ones.</summary>
    public EpsRmsNorm(long dim, double eps = 1e-5) : base("RMSNorm")
    {
        _eps = eps;
        _weight = new Parameter(ones(dim));
        register_parameter("weight", _weight);
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var inv = (x.square().mean(new long[] { -1 }, keepdim: true) + _eps).rsqrt();
        return (x * inv * _weight).MoveToOuterDisposeScope();
    }
}
