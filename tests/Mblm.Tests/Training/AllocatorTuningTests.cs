namespace Mblm.Tests;

/// <summary>The <c>mblm</c> tool applies the allocator tuning MBLM_MALLOC_TUNING asks for (bounded by default) and refuses unknown values.</summary>
[TestClass]
public sealed class AllocatorTuningTests
{
    [TestMethod]
    [DataRow(null, "bounded")]
    [DataRow("off", "none")]
    [DataRow("0", "none")]
    [DataRow("keep-all", "keep-all")]
    [DataRow("1", "keep-all")]
    public void Info_ReportsTheTuningInForce(string? value, string expected)
    {
        var (code, stdout, stderr) = Cli(value, "info");
        Assert.AreEqual(0, code, stderr);
        StringAssert.Contains(stdout, $"allocator tuning: {expected} ");
        StringAssert.Contains(stdout, $"\"allocator_tuning\":\"{expected}\"");
    }

    [TestMethod]
    public void UnknownValue_IsAUsageErrorNamingTheVariable()
    {
        var (code, _, stderr) = Cli("lots", "info");
        Assert.AreEqual(1, code);
        StringAssert.Contains(stderr, "MBLM_MALLOC_TUNING must be bounded, off (0) or keep-all (1), got 'lots'");
        Assert.IsFalse(stderr.Contains("   at "), "no stack trace");
    }

    private static (int Code, string Stdout, string Stderr) Cli(string? tuning, params string[] args) =>
        CliTests.MblmProcess(AppContext.BaseDirectory, new Dictionary<string, string?> { ["MBLM_MALLOC_TUNING"] = tuning }, args);
}
