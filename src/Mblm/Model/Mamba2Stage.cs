using Mblm.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// Mamba2 stage (reference <c>Mamba2Mixer</c> = mamba-ssm's <c>MixerModel</c> without embedding and head): pre-norm
/// residual blocks <c>r = h + r; h = mixer(RMSNorm(r))</c> and a final <c>RMSNorm_f(h + r)</c>. Dropout before the final
/// norm applies in training only (the reference applies it at evaluation too; we don't).
/// State: <c>layers.j.norm.weight</c>, <c>layers.j.mixer.*</c> (see <see cref="Mamba2Layer"/>), <c>norm_f.weight</c>.
/// </summary>
public sealed class Mamba2Stage : StageModel
{
    private readonly ModuleList<Mamba2Block> _layers;
    private readonly EpsRmsNorm _normF;
    private readonly double _dropout;

    /// <summary>Builds the stage with mamba-ssm's initialisation (out_proj rescaled by √layers).</summary>
    public Mamba2Stage(Mamba2BlockConfig block, long dim, int numLayers) : base("Mamba2Mixer")
    {
        _dropout = block.Dropout;
        _layers = new ModuleList<Mamba2Block>(Enumerable.Range(0, numLayers).Select(_ => new Mamba2Block(block, dim, numLayers)).ToArray());
        _normF = new EpsRmsNorm(dim);
        register_module("layers", _layers);
        register_module("norm_f", _normF);
    }

    /// <summary>Scan method of every layer (default <see cref="Mamba2ScanMode.Chunked"/>).</summary>
    public Mamba2ScanMode ScanMode
    {
        get => _layers.Count > 0 ? _layers[0].Mixer.ScanMode : Mamba2ScanMode.Chunked;
        set { foreach (var l in _layers) l.Mixer.ScanMode = value; }
    }

    /// <summary>Chunk length of the chunked scan (default 64).</summary>
    public int ChunkSize
    {
        get => _layers.Count > 0 ? _layers[0].Mixer.ChunkSize : Mamba2Layer.DefaultChunkSize;
        set { foreach (var l in _layers) l.Mixer.ChunkSize = value; }
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        Tensor h = x;
        Tensor? residual = null;
        foreach (var layer in _layers)
            (h, residual) = layer.forward(h, residual);
        var sum = residual is null ? h : Dropout(h) + residual;
        return _normF.forward(sum).MoveToOuterDisposeScope();
    }

    /// <summary>Fresh recurrent state (conv windows and SSM states of every layer) for <paramref name="rows"/> sequences.</summary>
    public Mamba2State[] NewState(long rows, Device device) => _layers.Select(l => l.Mixer.NewState(rows, device)).ToArray();

    /// <inheritdoc />
    public override StageCache NewCache(long rows, long capacity, Device device) => new Mamba2Cache(NewState(rows, device));

    /// <inheritdoc />
    public override Tensor Step(Tensor x, StageCache cache)
    {
        var c = (Mamba2Cache)cache;
        c.Advance(1);
        return Step(x, c.Layers);
    }

    /// <inheritdoc />
    public override Tensor Prefill(Tensor x, StageCache cache)
    {
        using var scope = NewDisposeScope();
        var c = (Mamba2Cache)cache;
        if (c.Position != 0) throw new InvalidOperationException("Prefill needs a fresh (reset) cache");
        Tensor h = x;
        Tensor? residual = null;
        for (int i = 0; i < _layers.Count; i++)
        {
            var r = residual is null ? h : h + residual;
            h = _layers[i].Mixer.Forward(_layers[i].Norm.forward(r), c.Layers[i]);
            residual = r;
        }
        c.Advance(x.size(1));
        var sum = residual is null ? h : h + residual;
        return _normF.forward(sum).MoveToOuterDisposeScope();
    }

    /// <summary>One time step: <paramref name="x"/> (R, D) → (R, D), advancing <paramref name="state"/> in place.</summary>
    public Tensor Step(Tensor x, Mamba2State[] state)
    {
        using var scope = NewDisposeScope();
        Tensor h = x;
        Tensor? residual = null;
        for (int i = 0; i < _layers.Count; i++)
            (h, residual) = _layers[i].Step(h, residual, state[i]);
        var sum = residual is null ? h : h + residual;
        return _normF.forward(sum).MoveToOuterDisposeScope();
    }

    private Tensor Dropout(Tensor h) => training && _dropout > 0 ? nn.functional.dropout(h, _dropout, training: true) : h;
}

/// <summary>One residual block: <c>norm</c> (RMSNorm, eps 1e-5) and <c>mixer</c> (<see cref="Mamba2Layer"/>).</summary>
internal sealed class Mamba2Block : nn.Module
{
    private readonly EpsRmsNorm _norm;

    /// <summary>The block's pre-norm.</summary>
    internal EpsRmsNorm Norm => _norm;

    /// <summary>The Mamba2 mixer of this block.</summary>
    public Mamba2Layer Mixer { get; }

    /// <summary>Names are registered explicitly (docs/state-dict.md); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    internal Mamba2Block(Mamba2BlockConfig block, long dim, int numLayers) : base("Block")
    {
        _norm = new EpsRmsNorm(dim);
        Mixer = new Mamba2Layer(block, dim, numLayers);
        register_module("norm", _norm);
        register_module("mixer", Mixer);
    }

    /// <summary><c>r = h + r</c> (r = h for the first block), <c>h = mixer(norm(r))</c>; returns (h, r).</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Style", "IDE1006", Justification = "TorchSharp's module convention: forward")]
    public (Tensor Hidden, Tensor Residual) forward(Tensor h, Tensor? residual)
    {
        var r = residual is null ? h : h + residual;
        return (Mixer.forward(_norm.forward(r)), r);
    }

    /// <summary>The same for one time step with recurrent state.</summary>
    public (Tensor Hidden, Tensor Residual) Step(Tensor h, Tensor? residual, Mamba2State state)
    {
        var r = residual is null ? h : h + residual;
        return (Mixer.Step(_norm.forward(r), state), r);
    }
}

/// <summary>Decoding state of a Mamba2 stage: each layer's conv window and SSM state.</summary>
internal sealed class Mamba2Cache : StageCache
{
    internal Mamba2State[] Layers { get; }

    internal Mamba2Cache(Mamba2State[] layers) => Layers = layers;

    internal void Advance(long positions) => Position += positions;

    /// <inheritdoc />
    public override void Reset()
    {
        Position = 0;
        foreach (var l in Layers)
        {
            l.Conv.zero_();
            l.Ssm.zero_();
        }
    }

    /// <inheritdoc />
    public override void RepeatRows(long times)
    {
        for (int i = 0; i < Layers.Length; i++)
        {
            var old = Layers[i];
            Layers[i] = new Mamba2State(old.Conv.repeat_interleave(times, 0).DetachFromDisposeScope(), old.Ssm.repeat_interleave(times, 0).DetachFromDisposeScope());
            old.Dispose();
        }
    }

    /// <inheritdoc />
    public override void Dispose()
    {
        foreach (var l in Layers) l.Dispose();
    }
}
