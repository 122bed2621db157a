using Mblm.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// The sequence model of one stage: <c>(R, S, D) → (R, S, D)</c>, causal along S. The hierarchy only talks to stages
/// through this type; a new block type is one subclass plus one case in <see cref="Create"/>.
/// </summary>
public abstract class StageModel : nn.Module<Tensor, Tensor>
{
    /// <summary>Names are registered explicitly (see NamingNote.cs); field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>Base constructor.</summary>
    protected StageModel(string name) : base(name) { }

    /// <summary>Builds the stage model that <paramref name="block"/> describes.</summary>
    public static StageModel Create(StageBlockConfig block, long dim, int numLayers) => block switch
    {
        TransformerBlockConfig t => new TransformerStage(t, dim, numLayers),
        Mamba2BlockConfig m => new Mamba2Stage(m, dim, numLayers),
        _ => throw new NotSupportedException($"block_type '{block.BlockType}' has no stage model"),
    };
}
