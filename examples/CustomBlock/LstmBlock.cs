using Mblm.Config;
using Mblm.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CustomBlock;

/// <summary>
/// A user-defined stage block: a stack of unidirectional LSTM layers followed by a LayerNorm, <c>(R, S, D) → (R, S, D)</c>,
/// causal along S. Its config fields are its init properties (<c>dropout</c> here); register it once per process with
/// <c>StageBlocks.Register&lt;LstmBlockConfig&gt;("lstm")</c>, then write <c>"block_type": "lstm"</c> in a config.
/// </summary>
public sealed record LstmBlockConfig : StageBlockConfig
{
    /// <summary>Dropout between LSTM layers in training (<c>dropout</c>, default 0).</summary>
    public double Dropout { get; init; }

    /// <inheritdoc />
    public override bool HasDropout => Dropout > 0;

    /// <inheritdoc />
    public override void Validate(string path, int dim)
    {
        ConfigException.Require(Dropout is >= 0 and < 1, $"{path}.dropout", "must be in [0, 1)");
        base.Validate(path, dim);
    }

    /// <inheritdoc />
    public override long CountParameters(long dim, long layers) => layers * 4 * (2 * dim * dim + 2 * dim) + 2 * dim;

    /// <inheritdoc />
    public override StageModel CreateStage(long dim, int numLayers) => new LstmStage(dim, numLayers, Dropout);
}

/// <summary>
/// The LSTM stage module. It has no incremental step of its own, so cached generation uses the documented fallback
/// (<see cref="StageModel"/> re-runs the stage over the current row's inputs at each step). State-dict names:
/// <c>lstm.weight_ih_l{k}</c>, <c>lstm.weight_hh_l{k}</c>, <c>lstm.bias_ih_l{k}</c>, <c>lstm.bias_hh_l{k}</c>,
/// <c>norm.weight</c>, <c>norm.bias</c> under <c>stage_models.i.</c>.
/// </summary>
public sealed class LstmStage : StageModel
{
    private readonly LSTM? _lstm;
    private readonly LayerNorm _norm;

    /// <summary>Builds <paramref name="numLayers"/> LSTM layers of width <paramref name="dim"/>.</summary>
    public LstmStage(long dim, int numLayers, double dropout) : base("LstmStage")
    {
        if (numLayers > 0)
        {
            _lstm = nn.LSTM(dim, dim, numLayers, batchFirst: true, dropout: numLayers > 1 ? dropout : 0);
            register_module("lstm", _lstm);
        }
        _norm = nn.LayerNorm(dim);
        register_module("norm", _norm);
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x;
        if (_lstm is not null)
        {
            var (output, hn, cn) = _lstm.forward(x);
            h = output + x; // residual
        }
        return _norm.forward(h).MoveToOuterDisposeScope();
    }
}
