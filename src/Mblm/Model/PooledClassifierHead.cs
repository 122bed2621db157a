using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mblm.Model;

/// <summary>
/// A classification head over <see cref="MblmModel.PooledFeatures"/>: dropout, then one linear layer to K class logits.
/// Its state dict is <c>proj.weight</c> (K, D_0 + 2·D_n) and <c>proj.bias</c> (K), saved beside the model's own weights
/// (the model's state-dict names stay the reference's). Initialised like <c>nn.Linear</c> from the torch generator.
/// </summary>
public sealed class PooledClassifierHead : nn.Module<Tensor, Tensor>
{
    private readonly Dropout _dropout;
    private readonly Linear _proj;

    /// <summary>Names are registered explicitly; field names must not leak into the state dict.</summary>
    protected override void RegisterComponents() { }

    /// <summary>A head from <paramref name="width"/> pooled features to <paramref name="classes"/> logits.</summary>
    /// <param name="width">The features' width (<see cref="MblmModel.PooledWidth"/>).</param>
    /// <param name="classes">K, at least 2.</param>
    /// <param name="dropout">Dropout on the features while training, in [0, 1).</param>
    public PooledClassifierHead(long width, long classes, double dropout) : base("PooledClassifierHead")
    {
        if (width < 1) throw new ArgumentOutOfRangeException(nameof(width), $"the pooled width must be positive (got {width})");
        if (classes < 2) throw new ArgumentOutOfRangeException(nameof(classes), $"a classifier needs at least 2 classes (got {classes})");
        if (dropout is < 0 or >= 1 || double.IsNaN(dropout)) throw new ArgumentOutOfRangeException(nameof(dropout), $"dropout must be in [0, 1) (got {dropout})");
        (Width, Classes, DropoutRate) = (width, classes, dropout);
        _dropout = nn.Dropout(dropout);
        _proj = nn.Linear(width, classes);
        register_module("proj", _proj);
        register_module("dropout", _dropout);
    }

    /// <summary>Width of the features it reads.</summary>
    public long Width { get; }

    /// <summary>K, the number of classes.</summary>
    public long Classes { get; }

    /// <summary>Dropout rate on the features while training.</summary>
    public double DropoutRate { get; }

    /// <summary>Class logits <c>(B, K)</c> of pooled features <c>(B, Width)</c> (any float type: computed in the head's).</summary>
    public override Tensor forward(Tensor pooled)
    {
        using var scope = NewDisposeScope();
        var x = pooled.to_type(_proj.weight!.dtype);
        return _proj.forward(_dropout.forward(x)).MoveToOuterDisposeScope();
    }
}
