namespace Mblm.Tests;

/// <summary>The <c>mblm</c> tool applies the allocator tuning MBLM_MALLOC_TUNING and the threading MBLM_THREADING_DEFAULTS ask for, and refuses unknown values.</summary>
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

    [TestMethod]
    [DataRow("shared", "GOMP_SPINCOUNT=2000")]
    [DataRow("1", "GOMP_SPINCOUNT=2000")]
    [DataRow("off", "libtorch")]
    [DataRow("0", "libtorch")]
    public void Info_ReportsTheThreadingInForce(string mode, string expected)
    {
        var (code, stdout, stderr) = CliTests.MblmProcess(AppContext.BaseDirectory,
            new Dictionary<string, string?> { ["MBLM_THREADING_DEFAULTS"] = mode, ["GOMP_SPINCOUNT"] = null }, "info");
        Assert.AreEqual(0, code, stderr);
        StringAssert.Contains(stdout, $"threading: {expected}: ");
        StringAssert.Contains(stdout, $"(MBLM_THREADING_DEFAULTS={mode})");
    }

    [TestMethod]
    public void ThreadingAuto_OnAMachineKeptBusy_TakesTheSharedSettings()
    {
        // Busy loops on every core started before the tool: auto must see them (the contended case of the contention benchmark).
        var busy = Enumerable.Range(0, Environment.ProcessorCount)
            .Select(_ => System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("sh", "-c \"while :; do :; done\"") { UseShellExecute = false })!)
            .ToList();
        try
        {
            Thread.Sleep(300);
            var (code, stdout, stderr) = CliTests.MblmProcess(AppContext.BaseDirectory,
                new Dictionary<string, string?> { ["MBLM_THREADING_DEFAULTS"] = null, ["GOMP_SPINCOUNT"] = null }, "info");
            Assert.AreEqual(0, code, stderr);
            StringAssert.Contains(stdout, "threading: GOMP_SPINCOUNT=2000: shared-machine settings (auto: other processes kept");
        }
        finally
        {
            foreach (var b in busy) { try { b.Kill(); b.WaitForExit(); } catch (InvalidOperationException) { } b.Dispose(); }
        }
    }

    [TestMethod]
    public void UnknownThreadingValue_IsAUsageErrorNamingTheVariable()
    {
        var (code, _, stderr) = CliTests.MblmProcess(AppContext.BaseDirectory, new Dictionary<string, string?> { ["MBLM_THREADING_DEFAULTS"] = "lots" }, "info");
        Assert.AreEqual(1, code);
        StringAssert.Contains(stderr, "MBLM_THREADING_DEFAULTS must be auto, shared (1) or off (0), got 'lots'");
    }

    private static (int Code, string Stdout, string Stderr) Cli(string? tuning, params string[] args) =>
        CliTests.MblmProcess(AppContext.BaseDirectory, new Dictionary<string, string?> { ["MBLM_MALLOC_TUNING"] = tuning }, args);
}
