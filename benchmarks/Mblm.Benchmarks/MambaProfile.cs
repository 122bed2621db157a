using Mblm.Config;
using Mblm.Model;
using static TorchSharp.torch;
namespace Mblm.Benchmarks;
internal static class MambaProfile
{
    public static void Run(Options o)
    {
        long l = o.Int("length", 4096);
        manual_seed(0);
        var x = randn(1, l, 1168).requires_grad_();
        var lin = nn.Linear(256, 1168, hasBias: false);
        var u = randn(1, l, 256).requires_grad_();
        var conv = nn.Conv1d(640, 640, 4, padding: 3, groups: 640);
        var xbc = randn(1, l, 640).requires_grad_();
        void T(string name, Func<Tensor> f) {
            for (int i = 0; i < 2; i++) { using var s0 = NewDisposeScope(); f().square().sum().backward(); }
            var times = Enumerable.Range(0, 5).Select(_ => { using var s = NewDisposeScope(); return Stats.TimeMs(() => f().square().sum().backward()); }).ToList();
            Console.WriteLine($"{name}: {Stats.Median(times):F1} ms");
        }
        T("in_proj", () => lin.forward(u));
        T("conv1d module", () => conv.forward(xbc.transpose(1, 2))[.., .., ..(int)l].transpose(1, 2));
        T("conv shifted", () => { var p = nn.functional.pad(xbc, new long[]{0,0,3,0}); var w = conv.weight!.squeeze(1); Tensor y = conv.bias!; for (int k=0;k<4;k++) y = y + p[..,
            k..(int)(k+l), ..] * w[.., k]; return y; });
        T("silu", () => nn.functional.silu(xbc));
        T("softplus", () => nn.functional.softplus(xbc));
        var norm = new EpsRmsNorm(512);
        var y5 = randn(1, l, 512).requires_grad_(); var z5 = randn(1, l, 512).requires_grad_();
        T("gated norm", () => norm.forward(y5 * nn.functional.silu(z5)));
        var split = x.split(new long[] { 512, 640, 16 }, -1);
        T("split", () => split[1] * 1);
    }
}
