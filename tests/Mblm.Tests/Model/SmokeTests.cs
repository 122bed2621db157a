using TorchSharp;
namespace Mblm.Tests;

[TestClass]
public sealed class NativeLoadTests
{
    [TestMethod]
    public void TensorOperation_Works()
    {
        Mblm.Native.TorchRuntime.EnsureLoadable();
        using var t = torch.ones(3, 4);
        Assert.AreEqual(12f, t.sum().item<float>());
    }
}
