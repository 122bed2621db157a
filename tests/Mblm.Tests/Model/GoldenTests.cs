using System.Text.Json;
using Mblm.Config;
using Mblm.Model;
using Mblm.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Mblm.Tests;

/// <summary>The reference-generated golden cases committed under Golden/reference (tolerances from the golden set's notes).</summary>
[TestClass]
public sealed class GoldenTests
{
    [TestMethod]
    [DataRow("v1_t2")]
    [DataRow("v2_t3")]
    [DataRow("v3_s2")]
    public void Golden_MatchesReference(string caseName)
    {
        string dir = TestData.Golden(caseName);
        var config = ConfigReader.LoadModel(Path.Combine(dir, "config.json"));
        using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        var exp = expected.RootElement;
        using var scope = NewDisposeScope();
        var model = new MblmModel(config);
        ModelWeights.Load(model, Path.Combine(dir, "weights.safetensors"));
        model.eval();
        var (ids, mask) = TestData.ReadInput(Path.Combine(dir, "input.json"));

        // Forward in eval mode.
        Tensor loss, logits, start;
        using (no_grad()) (loss, logits, start) = model.LossAndLogits(ids, mask);

        var shape = exp.GetProperty("logits_shape").EnumerateArray().Select(x => x.GetInt64()).ToArray();
        CollectionAssert.AreEqual(shape, logits.shape, "logits shape");
        var bytes = File.ReadAllBytes(Path.Combine(dir, "logits.bin"));
        var reference = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, reference, 0, bytes.Length);
        var mine = logits.contiguous().data<float>().ToArray();
        double maxDiff = mine.Zip(reference, (a, b) => Math.Abs((double)a - b)).Max();
        Assert.IsTrue(maxDiff <= 1e-4, $"logits max abs diff {maxDiff:E3} > 1e-4");

        double expLoss = exp.GetProperty("loss").GetDouble();
        double myLoss = loss.item<float>();
        Assert.IsTrue(Math.Abs(myLoss - expLoss) <= 1e-5 * Math.Abs(expLoss), $"loss {myLoss} vs reference {expLoss}");

        var ambiguous = exp.GetProperty("argmax_ambiguous").EnumerateArray()
            .Select(p => (p[0].GetInt32(), p[1].GetInt32())).ToHashSet();
        var argmax = logits.argmax(-1);
        int b = 0;
        foreach (var row in exp.GetProperty("argmax").EnumerateArray())
        {
            int t = 0;
            foreach (var a in row.EnumerateArray())
            {
                if (!ambiguous.Contains((b, t)))
                    Assert.AreEqual(a.GetInt64(), argmax[b, t].item<long>(), $"argmax at [{b}, {t}]");
                t++;
            }
            b++;
        }

        b = 0;
        foreach (var row in exp.GetProperty("start_logits_first8").EnumerateArray())
        {
            var values = row.EnumerateArray().Select(x => x.GetDouble()).ToArray();
            for (int i = 0; i < values.Length; i++)
                Assert.AreEqual(values[i], start[b, i].item<float>(), 1e-4, $"start logits [{b}, {i}]");
            b++;
        }

        // Gradient norms: one backward in training mode (dropout 0 = same forward).
        model.train();
        model.zero_grad();
        model.Loss(ids, mask).backward();
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var gradNorms = exp.GetProperty("grad_norms");
        Assert.AreEqual(gradNorms.EnumerateObject().Count(), parameters.Count, "number of parameters with grad norms");
        foreach (var entry in gradNorms.EnumerateObject())
        {
            Assert.IsTrue(parameters.ContainsKey(entry.Name), $"model lacks parameter {entry.Name}");
            var grad = parameters[entry.Name].grad;
            double norm = grad is null ? 0 : grad.to_type(float64).norm().item<double>();
            double want = entry.Value.GetDouble();
            Assert.IsTrue(Math.Abs(norm - want) <= Math.Max(1e-4 * Math.Abs(want), 1e-9), $"grad norm of {entry.Name}: {norm} vs reference {want}");
        }
    }
}
