using System.Diagnostics;

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

    private static (int Code, string Stdout, string Stderr) Cli(string? tuning, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Mblm.Cli.dll"));
        foreach (string a in args) psi.ArgumentList.Add(a);
        if (tuning is null) psi.Environment.Remove("MBLM_MALLOC_TUNING");
        else psi.Environment["MBLM_MALLOC_TUNING"] = tuning;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        string stderr = p.StandardError.ReadToEnd();
        if (!p.WaitForExit(120_000)) { p.Kill(true); Assert.Fail($"mblm {string.Join(' ', args)} did not finish in 120 s"); }
        return (p.ExitCode, stdout.Result, stderr);
    }
}
