using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// Patch embedder of a global stage i (reference: <c>Sequential(Embedding, Rearrange, LayerNorm, Linear, LayerNorm)</c>):
/// the Q_i bytes of a unit are embedded at the local width D_n, concatenated in byte order, layer-normed, projected to
/// D_i and layer-normed. State: <c>0.weight</c> (V, D_n), <c>2.weight/bias</c> (Q_i·D_n), <c>3.weight</c> (D_i, Q_i·D_n),
/// <c>3.bias</c>, <c>4.weight/bias</c> (D_i).
/// </summary>
internal sealed class PatchEmbedder : nn.Module<Tensor, Tensor>
{
    private readonly Embedding _bytes;
    private readonly LayerNorm _unitNorm, _outNorm;
    private readonly Linear _project;

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the embedder for units of <paramref name="unitBytes"/> bytes.</summary>
    public PatchEmbedder(long vocab, long localDim, long unitBytes, long stageDim, long padId) : base("PatchEmbedder")
    {
        _bytes = nn.Embedding(vocab, localDim, padding_idx: padId);
        _unitNorm = nn.LayerNorm(unitBytes * localDim);
        _project = nn.Linear(unitBytes * localDim, stageDim);
        _outNorm = nn.LayerNorm(stageDim);
        register_module("0", _bytes);
        register_module("2", _unitNorm);
        register_module("3", _project);
        register_module("4", _outNorm);
    }

    /// <summary>Embeds ids <c>(…, Q)</c> (one unit per row of Q bytes) into <c>(…, D_i)</c>.</summary>
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var e = _bytes.forward(ids);          // (…, Q, D_n)
        e = e.flatten(-2);                    // (…, Q·D_n): byte r at [r·D_n, (r+1)·D_n)
        return _outNorm.forward(_project.forward(_unitNorm.forward(e))).MoveToOuterDisposeScope();
    }
}

/// <summary>One learned start vector per stage; state <c>0</c>, <c>1</c>, … (each D_i), initialised N(0, 1).</summary>
internal sealed class StartTokens : nn.Module
{

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates one vector per entry of <paramref name="dims"/>.</summary>
    public StartTokens(IReadOnlyList<int> dims) : base("StartTokens")
    {
        for (int i = 0; i < dims.Count; i++) register_parameter(i.ToString(), new Parameter(randn(dims[i])));
    }

    /// <summary>The start vector of stage <paramref name="stage"/>.</summary>
    public Parameter this[int stage] => get_parameter(stage.ToString())!; // by name: Module.to() replaces parameters
}

/// <summary>
/// Projection of a stage's outputs into the next stage (reference <c>Sequential(Rearrange, Linear, Rearrange)</c>):
/// <c>(R, S, D_i) → (R·S, P_{i+1}, D_{i+1})</c>. State: <c>1.weight</c> (P_{i+1}·D_{i+1}, D_i), <c>1.bias</c>.
/// </summary>
internal sealed class NextStageProjection : nn.Module<Tensor, Tensor>
{
    private readonly Linear _linear;
    private readonly long _nextLen, _nextDim;

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the projection from width <paramref name="dim"/> to <paramref name="nextLen"/> units of <paramref name="nextDim"/>.</summary>
    public NextStageProjection(long dim, long nextLen, long nextDim) : base("NextStageProjection")
    {
        (_nextLen, _nextDim) = (nextLen, nextDim);
        _linear = nn.Linear(dim, nextLen * nextDim);
        register_module("1", _linear);
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        // (R, S, D_i) -> (R, S, P·D') -> (R·S, P, D'): row r·S + j feeds unit j of parent row r.
        using var y = _linear.forward(x);
        return y.reshape(-1, _nextLen, _nextDim);
    }
}

/// <summary>A parameter-free placeholder that keeps module-list indices aligned with stages (reference <c>nn.Identity</c>).</summary>
internal sealed class Placeholder : nn.Module<Tensor, Tensor>
{
    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Creates the placeholder.</summary>
    public Placeholder() : base("Identity") { }

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => x.alias();
}
