using Mblm.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// The Mamba2 mixer (mamba-ssm 2.2.2 <c>Mamba2</c> with ngroups 1, no biases on the projections, conv bias, D per head,
/// gated RMSNorm with norm-before-gate false): <c>in_proj</c> → [z, xBC, dt]; xBC → causal depthwise conv + SiLU →
/// [x, B, C]; <c>Δ = softplus(dt + dt_bias)</c>, <c>A = −exp(A_log)</c>; scan + D·x; <c>RMSNorm(y·SiLU(z))·w</c>; <c>out_proj</c>.
/// State: <c>in_proj.weight</c> (2·d_inner + 2N + H, D), <c>conv1d.weight</c> (d_inner + 2N, 1, d_conv), <c>conv1d.bias</c>,
/// <c>dt_bias</c>, <c>A_log</c>, <c>D</c> (H), <c>norm.weight</c> (d_inner), <c>out_proj.weight</c> (D, d_inner).
/// </summary>
internal sealed class Mamba2Layer : nn.Module<Tensor, Tensor>
{
    /// <summary>Default chunk length of the chunked scan.</summary>
    public const int DefaultChunkSize = 64;

    private readonly Linear _inProj, _outProj;
    private readonly Conv1d _conv;
    // Looked up by name at use: Module.to(device/dtype) replaces parameters, so cached references would go stale.
    private Parameter DtBias => get_parameter("dt_bias")!;
    private Parameter ALog => get_parameter("A_log")!;
    private Parameter DSkip => get_parameter("D")!;
    private readonly EpsRmsNorm _gatedNorm;
    private readonly long _inner, _heads, _headDim, _state, _convWidth;

    /// <summary>Scan method (default chunked).</summary>
    public Mamba2ScanMode ScanMode { get; set; } = Mamba2ScanMode.Chunked;

    /// <summary>Chunk length of the chunked scan.</summary>
    public int ChunkSize { get; set; } = DefaultChunkSize;

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the mixer with mamba-ssm's initialisation for a stage of <paramref name="numLayers"/> layers.</summary>
    public Mamba2Layer(Mamba2BlockConfig block, long dim, int numLayers) : base("Mamba2")
    {
        _inner = block.InnerDim(dim);
        _headDim = block.Headdim;
        _heads = _inner / _headDim;
        _state = block.DState;
        _convWidth = block.DConv;
        long convChannels = _inner + 2 * _state;

        _inProj = nn.Linear(dim, 2 * _inner + 2 * _state + _heads, hasBias: false);
        _conv = nn.Conv1d(convChannels, convChannels, _convWidth, padding: _convWidth - 1, groups: convChannels, bias: true);

        using (no_grad())
        {
            // Δ initialised log-uniformly in [1e-3, 0.1], floored at 1e-4; dt_bias = softplus⁻¹(Δ).
            var dt = (rand(_heads) * (Math.Log(0.1) - Math.Log(1e-3)) + Math.Log(1e-3)).exp().clamp_min(1e-4);
            register_parameter("dt_bias", new Parameter(dt + (-(-dt).expm1()).log()));
            register_parameter("A_log", new Parameter(empty(_heads).uniform_(1, 16).log()));
            register_parameter("D", new Parameter(ones(_heads)));
        }
        _gatedNorm = new EpsRmsNorm(_inner);
        _outProj = nn.Linear(_inner, dim, hasBias: false);
        using (no_grad())
        {
            // mamba-ssm _init_weights(rescale_prenorm_residual): out_proj redrawn kaiming-uniform(a=√5), divided by √layers.
            nn.init.kaiming_uniform_(_outProj.weight!, a: Math.Sqrt(5));
            _outProj.weight!.div_(Math.Sqrt(numLayers));
        }

        register_module("in_proj", _inProj);
        register_module("conv1d", _conv);
        register_module("norm", _gatedNorm);
        register_module("out_proj", _outProj);
    }

    /// <summary>Mixes <paramref name="u"/> (R, L, D) causally along L.</summary>
    public override Tensor forward(Tensor u) => Forward(u, null);

    /// <summary>
    /// Mixes <paramref name="u"/> (R, L, D); with <paramref name="finalState"/> also stores the state after the last
    /// position (conv window and SSM state), so that <see cref="Step"/> continues the sequence exactly.
    /// </summary>
    public Tensor Forward(Tensor u, Mamba2State? finalState)
    {
        using var scope = NewDisposeScope();
        long rows = u.size(0), length = u.size(1);
        var (z, xbcRaw, dtRaw) = Split(_inProj.forward(u));
        var xbc = nn.functional.silu(CausalConv(xbcRaw));
        var parts = xbc.split(new[] { _inner, _state, _state }, -1);
        var x = parts[0].view(rows, length, _heads, _headDim);
        var dt = nn.functional.softplus(dtRaw + DtBias);                       // (R, L, H)
        var a = -ALog.exp();                                                   // (H)
        var y = Mamba2Scan.Run(ScanMode, x, dt, a, parts[1], parts[2], ChunkSize);
        if (finalState is not null)
        {
            using var noGrad = no_grad();
            // Conv window: the last d_conv pre-conv inputs (zeros before the sequence start), as (R, C, d_conv).
            var window = nn.functional.pad(xbcRaw, new long[] { 0, 0, _convWidth, 0 })[.., ^(int)_convWidth.., ..].transpose(1, 2);
            finalState.Conv.copy_(window);
            // SSM state after the last step: Σ_t exp(a_{t+1} + … + a_{L−1}) · Δ_t x_t ⊗ B_t, decays summed from the end.
            var logDecay = dt * a;                                                                  // (R, L, H)
            var toEnd = (logDecay.flip(1).cumsum(1).flip(1) - logDecay).exp() * dt;                 // (R, L, H)
            var weighted = (x * toEnd.unsqueeze(-1)).permute(0, 2, 3, 1);                            // (R, H, p, L)
            finalState.Ssm.copy_(matmul(weighted, parts[1].unsqueeze(1)));                          // (R, H, p, N)
        }
        y = y + x * DSkip.view(1, 1, _heads, 1);
        return _outProj.forward(Gate(y.reshape(rows, length, _inner), z)).MoveToOuterDisposeScope();
    }

    /// <summary>Zero conv window (R, d_inner + 2N, d_conv) and SSM state (R, H, headdim, N).</summary>
    public Mamba2State NewState(long rows, Device device) => new(
        zeros(new[] { rows, _inner + 2 * _state, _convWidth }, _inProj.weight!.dtype, device).DetachFromDisposeScope(),
        zeros(new[] { rows, _heads, _headDim, _state }, _inProj.weight!.dtype, device).DetachFromDisposeScope());

    /// <summary>One time step <paramref name="u"/> (R, D) → (R, D), updating <paramref name="state"/> in place.</summary>
    public Tensor Step(Tensor u, Mamba2State state)
    {
        using var scope = NewDisposeScope();
        long rows = u.size(0);
        var (z, xbc, dtRaw) = Split(_inProj.forward(u));
        // Slide the conv window one step and apply the depthwise kernel to it.
        var window = cat(new[] { state.Conv[.., .., 1..], xbc.unsqueeze(-1) }, -1);
        state.Conv.copy_(window);
        var convOut = (window * _conv.weight!.squeeze(1)).sum(-1) + _conv.bias!;
        var parts = nn.functional.silu(convOut).split(new[] { _inner, _state, _state }, -1);
        var x = parts[0].view(rows, _heads, _headDim);
        var dt = nn.functional.softplus(dtRaw + DtBias);                       // (R, H)
        var decay = (dt * -ALog.exp()).exp().view(rows, _heads, 1, 1);
        var input = (x * dt.unsqueeze(-1)).unsqueeze(-1) * parts[1].view(rows, 1, 1, _state);
        state.Ssm.copy_(state.Ssm * decay + input);
        var y = matmul(state.Ssm, parts[2].view(rows, 1, _state, 1)).squeeze(-1) + x * DSkip.view(1, _heads, 1);
        return _outProj.forward(Gate(y.reshape(rows, _inner), z)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Depthwise causal conv over time on (R, L, C): <c>y_t = b + Σ_k w_k · x_{t−(d_conv−1)+k}</c> with zeros before t = 0 —
    /// the same function as <c>conv1d(groups = C, padding = d_conv − 1)</c> truncated to L, written as d_conv shifted
    /// multiply-adds in the (R, L, C) layout (libtorch's depthwise conv1d is slow on CPU, mostly in backward).
    /// </summary>
    private Tensor CausalConv(Tensor x)
    {
        using var scope = NewDisposeScope();
        long length = x.size(1);
        var padded = nn.functional.pad(x, new long[] { 0, 0, _convWidth - 1, 0 });   // (R, L + d_conv − 1, C)
        var w = _conv.weight!.squeeze(1);                                             // (C, d_conv)
        Tensor y = _conv.bias!;
        for (long k = 0; k < _convWidth; k++)
            y = y + padded[.., (int)k..(int)(k + length), ..] * w[.., k];
        return y.MoveToOuterDisposeScope();
    }

    private (Tensor Z, Tensor Xbc, Tensor Dt) Split(Tensor projected)
    {
        var p = projected.split(new[] { _inner, _inner + 2 * _state, _heads }, -1);
        return (p[0], p[1], p[2]);
    }

    // Gated RMSNorm, norm_before_gate = false: RMSNorm(y · SiLU(z)) · weight over all of d_inner (one group).
    private Tensor Gate(Tensor y, Tensor z) => _gatedNorm.forward(y * nn.functional.silu(z));
}

/// <summary>Recurrent state of one Mamba2 layer: conv window (R, d_inner + 2N, d_conv) and SSM state (R, H, headdim, N).</summary>
public sealed record Mamba2State(Tensor Conv, Tensor Ssm) : IDisposable
{
    /// <inheritdoc />
    public void Dispose()
    {
        Conv.Dispose();
        Ssm.Dispose();
    }
}
