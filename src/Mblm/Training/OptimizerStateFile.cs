using Mblm.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mblm.Training;

/// <summary>
/// The Adam/AdamW state of a checkpoint as a safetensors file (validated like any weights file before anything is
/// allocated), instead of TorchSharp's own binary format, whose reader trusts the sizes it finds and can crash the process
/// on a damaged file. Per parameter i (in <c>model.parameters()</c> order): <c>i.step</c> (I64, [1]), <c>i.exp_avg</c>,
/// <c>i.exp_avg_sq</c> and, for AMSGrad, <c>i.max_exp_avg_sq</c> (each the parameter's shape).
/// </summary>
internal static class OptimizerStateFile
{
    private sealed record Slot(Func<long> GetStep, Action<long> SetStep, Func<Tensor?>[] Get, Action<Tensor>[] Set);

    private static readonly string[] Names = ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"];

    private static List<Slot> Slots(optim.Optimizer optimizer) => ((OptimizerHelper)optimizer).state_dict().State.Select(s => s switch
    {
        Adam.State a => new Slot(() => a.step, v => a.step = v, [() => a.exp_avg, () => a.exp_avg_sq, () => a.max_exp_avg_sq],
            [t => a.exp_avg = t, t => a.exp_avg_sq = t, t => a.max_exp_avg_sq = t]),
        AdamW.State w => new Slot(() => w.step, v => w.step = v, [() => w.exp_avg, () => w.exp_avg_sq, () => w.max_exp_avg_sq],
            [t => w.exp_avg = t, t => w.exp_avg_sq = t, t => w.max_exp_avg_sq = t]),
        _ => throw new NotSupportedException($"checkpoints store Adam or AdamW state, not {s.GetType().Name}"),
    }).ToList();

    public static void Save(optim.Optimizer optimizer, string path)
    {
        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>();
        var slots = Slots(optimizer);
        for (int i = 0; i < slots.Count; i++)
        {
            tensors[$"{i}.step"] = tensor(new[] { slots[i].GetStep() });
            for (int k = 0; k < Names.Length; k++)
                if (slots[i].Get[k]() is { } t) tensors[$"{i}.{Names[k]}"] = t;
        }
        SafeTensors.Save(tensors, path);
    }

    /// <summary>Checks the file against the optimiser's parameters (names, shapes, dtypes), then copies it in.</summary>
    public static void Load(optim.Optimizer optimizer, IReadOnlyList<Parameter> parameters, string path)
    {
        var slots = Slots(optimizer);
        var tensors = SafeTensors.Load(path);
        try
        {
            var expected = new HashSet<string>();
            for (int i = 0; i < slots.Count; i++)
            {
                expected.Add($"{i}.step");
                if (!tensors.TryGetValue($"{i}.step", out var step) || step.dtype != ScalarType.Int64 || !step.shape.SequenceEqual(new long[] { 1 }))
                    throw new MblmFormatException(path, $"{i}.step", "must be an I64 tensor of shape [1]");
                if (step.item<long>() < 0) throw new MblmFormatException(path, $"{i}.step", "must not be negative");
                for (int k = 0; k < Names.Length; k++)
                {
                    string name = $"{i}.{Names[k]}";
                    if (!tensors.TryGetValue(name, out var t))
                    {
                        if (k < 2) throw new MblmFormatException(path, name, "is missing");
                        continue;
                    }
                    expected.Add(name);
                    if (!t.shape.SequenceEqual(parameters[i].shape) || !t.is_floating_point())
                        throw new MblmFormatException(path, name,
                            $"has shape [{string.Join(", ", t.shape)}] {t.dtype}; parameter {i} is [{string.Join(", ", parameters[i].shape)}] {parameters[i].dtype}");
                    CheckpointStore.RequireFinite(t, path, name, bounded: false);
                }
            }
            if (tensors.Keys.FirstOrDefault(k => !expected.Contains(k)) is { } extra)
                throw new MblmFormatException(path, extra, $"is not optimiser state of this model ({slots.Count} parameters)");
            using var noGrad = no_grad();
            for (int i = 0; i < slots.Count; i++)
            {
                slots[i].SetStep(tensors[$"{i}.step"].item<long>());
                for (int k = 0; k < Names.Length; k++)
                {
                    if (!tensors.TryGetValue($"{i}.{Names[k]}", out var value)) continue;
                    var target = value.to(parameters[i].dtype, parameters[i].device);
                    if (slots[i].Get[k]() is { } current) { current.copy_(target); target.Dispose(); }
                    else slots[i].Set[k](target.DetachFromDisposeScope());
                }
            }
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }
}
