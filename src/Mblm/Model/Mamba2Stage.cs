using Mblm.Config;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>Mamba2 stage (work in progress).</summary>
public sealed class Mamba2Stage : StageModel
{
    public Mamba2Stage(Mamba2BlockConfig block, long dim, int numLayers) : base("Mamba2Mixer") =>
        throw new NotSupportedException("Mamba2 stages are not implemented yet");

    public override Tensor forward(Tensor x) => throw new NotSupportedException();
}
