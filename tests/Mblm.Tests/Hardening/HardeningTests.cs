using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using Mblm.Config;
using Mblm.Model;
using Mblm.Weights;
using Microsoft.ML;
using static Mblm.Tests.TestData;
using static TorchSharp.torch;

namespace Mblm.Tests;

/// <summary>Hostile files: bounded work, typed errors naming the file/key, checked before anything is allocated.</summary>
[TestClass]
public sealed class HardeningTests
{
    private const string Minimal = ConfigTests.Minimal;

    [TestMethod]
    public void YamlAliasBomb_InTheIoSection_IsRefusedQuickly()
    {
        var sb = new StringBuilder("params:\n" + string.Join("\n", Minimal.Split('\n').Select(l => "  " + l)) + "\nio:\n");
        sb.Append("  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for (int i = 1; i < 10; i++) sb.Append($"  a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]\n");
        var clock = Stopwatch.StartNew();
        var e = Assert.ThrowsExactly<ConfigException>(() => ConfigReader.Parse(sb.ToString()));
        Assert.IsTrue(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
        StringAssert.StartsWith(e.Key, "io.a");
        StringAssert.Contains(e.Message, "aliases");
    }

    [TestMethod]
    public void DeepNesting_IsRefusedWithoutStackOverflow()
    {
        string deep = "{\"num_tokens\": " + new string('[', 100_000) + new string(']', 100_000) + "}";
        var e = Assert.ThrowsExactly<ConfigException>(() => ConfigReader.Parse(deep));
        StringAssert.Contains(e.Message, "deeper than");
    }

    [TestMethod]
    [DataRow("hidden_dims: [16, 8]", "hidden_dims: [2147483647, 16]", "hidden_dims[0]")]
    [DataRow("hidden_dims: [16, 8]", "hidden_dims: [1e9, 16]", "hidden_dims[0]")]
    [DataRow("num_tokens: 257", "num_tokens: 100000000", "num_tokens")]
    [DataRow("num_layers: [1, 1]", "num_layers: [100000, 1]", "num_layers[0]")]
    [DataRow("seq_lens: [4, 3]", "seq_lens: [2000000000, 2000000000]", "seq_lens")]
    public void AbsurdSizes_AreRefusedByTheConfigRules(string from, string to, string key)
    {
        var e = Assert.ThrowsExactly<ConfigException>(() => ConfigReader.Parse(Minimal.Replace(from, to)));
        Assert.AreEqual(key, e.Key, e.Message);
    }

    [TestMethod]
    public void ModelBeyondTheMemoryBudget_IsRefusedBeforeAllocating_SayingHowMuchItNeeds()
    {
        var config = Cfg([1024, 512], [64, 8], [T(heads: 8, headDim: 128), T(heads: 4, headDim: 128)], layers: [4, 2]);
        long saved = Limits.MemoryBudgetBytes;
        try
        {
            Limits.MemoryBudgetBytes = 1 << 20;
            var e = Assert.ThrowsExactly<ConfigException>(() => new MblmModel(config));
            StringAssert.Contains(e.Message, Limits.FormatBytes(config.ParameterBytes()));
            StringAssert.Contains(e.Message, "memory budget of 1 MiB");
        }
        finally { Limits.MemoryBudgetBytes = saved; }
    }

    [TestMethod]
    public void ParameterCounts_NeverWrapAround()
    {
        var big = Cfg([1 << 20, 1 << 20], [1 << 10, 1 << 10], [T(heads: 1 << 10, headDim: 1 << 10), T()], layers: [4096, 1]);
        long count = big.CountParameters();
        Assert.IsTrue(count > 0 && count > (1L << 40), $"{count}");
    }

    // ---- safetensors ----

    private static byte[] File(string headerJson, int dataBytes)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        var bytes = new byte[8 + header.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        return bytes;
    }

    private static MblmFormatException Refused(byte[] file, string? entry = null)
    {
        var e = Assert.ThrowsExactly<MblmFormatException>(() => SafeTensors.Load(new MemoryStream(file), "w.safetensors"));
        Assert.AreEqual("w.safetensors", e.FileName);
        if (entry is not null) Assert.AreEqual(entry, e.Entry, e.Message);
        return e;
    }

    [TestMethod]
    public void SafeTensors_HugeClaimInATinyFile_IsRefusedBeforeAllocating()
    {
        var e = Refused(File("""{"x": {"dtype": "F32", "shape": [536870911], "data_offsets": [0, 2147483644]}}""", 80));
        StringAssert.Contains(e.Message, "truncated");
    }

    [TestMethod]
    [DataRow("""{"x": {"dtype": null, "shape": [2], "data_offsets": [0, 8]}}""", "x", "dtype")]
    [DataRow("""{"x": {"dtype": "F32", "data_offsets": [0, 8]}}""", "x", "shape")]
    [DataRow("""{"x": {"dtype": "F32", "shape": [2]}}""", "x", "data_offsets")]
    [DataRow("""{"x": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}""", "x", "unsupported dtype")]
    [DataRow("""{"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}""", "x", "shape")]
    [DataRow("""{"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}""", "x", "needs 12")]
    [DataRow("""{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}""", "y", "overlap")]
    [DataRow("""{"x": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}""", "x", "gap")]
    [DataRow("""{"x": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 8]}}""", "x", "more elements")]
    [DataRow("""{"x": 3}""", "x", "object")]
    public void SafeTensors_MalformedEntries_NameTheEntry(string header, string entry, string problem)
    {
        var e = Refused(File(header, 8), entry);
        StringAssert.Contains(e.Message, problem);
    }

    [TestMethod]
    [DataRow("name")]
    [DataRow("dtype")]
    [DataRow("metadata")]
    public void SafeTensors_HeaderThatIsNotUtf8_IsATypedError(string where)
    {
        // Fuzz seed 20261204, safetensors #45: an invalid UTF-8 byte in a string reached System.Text.Json's transcoding
        // (InvalidOperationException) instead of a format error.
        string header = where switch
        {
            "name" => """{"x\u00ff": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}""",
            "dtype" => """{"x": {"dtype": "F3\u00ff", "shape": [2], "data_offsets": [0, 8]}}""",
            _ => """{"__metadata__": {"k": "v\u00ff"}, "x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}""",
        };
        var file = File(header.Replace("\\u00ff", "\u00ff"), 8);
        // Replace the two UTF-8 bytes of U+00FF (C3 BF) by a lone continuation byte and a space: invalid UTF-8, same length.
        int at = file.AsSpan().IndexOf(new byte[] { 0xC3, 0xBF });
        Assert.IsTrue(at > 0, "the marker is in the header");
        file[at] = 0xBF;
        file[at + 1] = 0x20;
        StringAssert.Contains(Refused(file).Message, "not valid UTF-8");
    }

    [TestMethod]
    public void SafeTensors_EmptyTruncatedAndTrailingFiles_AreTypedErrors()
    {
        StringAssert.Contains(Refused([]).Message, "empty");
        var good = File("""{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}""", 8);
        StringAssert.Contains(Refused(good[..^3]).Message, "truncated");
        StringAssert.Contains(Refused([.. good, 1, 2, 3]).Message, "after its last tensor");
        StringAssert.Contains(Refused(good[..20]).Message, "header");
        using var ok = SafeTensors.Load(new MemoryStream(good), "w.safetensors")["x"];
        CollectionAssert.AreEqual(new long[] { 2 }, ok.shape);
    }

    [TestMethod]
    public void SafeTensors_NonSeekableStream_TruncationIsStillTyped()
    {
        var good = File("""{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}""", 8);
        using var pipe = new System.IO.Compression.GZipStream(new MemoryStream(Gzip(good[..^3])), System.IO.Compression.CompressionMode.Decompress);
        var e = Assert.ThrowsExactly<MblmFormatException>(() => SafeTensors.Load(pipe, "w"));
        StringAssert.Contains(e.Message, "truncated");
    }

    private static byte[] Gzip(byte[] data)
    {
        var ms = new MemoryStream();
        using (var gz = new System.IO.Compression.GZipStream(ms, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true)) gz.Write(data);
        return ms.ToArray();
    }

    [TestMethod]
    public void SafeTensors_TensorsBeyondTheBudget_AreRefusedBeforeAllocating()
    {
        var file = File("""{"x": {"dtype": "F32", "shape": [1024, 1024], "data_offsets": [0, 4194304]}}""", 4 << 20);
        long saved = Limits.MemoryBudgetBytes;
        try
        {
            Limits.MemoryBudgetBytes = 1 << 20;
            StringAssert.Contains(Refused(file).Message, "memory budget");
        }
        finally { Limits.MemoryBudgetBytes = saved; }
    }

    [TestMethod]
    public void Weights_WithAnIntegerDtypeForAFloatParameter_AreRefused()
    {
        using var scope = NewDisposeScope();
        var model = RandomModel(Cfg([16, 8], [4, 3], [T(), T()]));
        var state = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        state["to_logits.bias"] = state["to_logits.bias"].to_type(ScalarType.Int32);
        var e = Assert.ThrowsExactly<MblmFormatException>(() => ModelWeights.Load(model, state, "w.safetensors"));
        Assert.AreEqual("to_logits.bias", e.Entry);
        state["to_logits.bias"] = state["to_logits.bias"].to_type(ScalarType.BFloat16); // float precisions convert
        ModelWeights.Load(model, state, "w.safetensors");
    }
}

/// <summary>Regressions found by the fuzz harness (benchmarks … fuzz): each case once failed with an untyped error or worse.</summary>
[TestClass]
public sealed class FuzzRegressionTests
{
    // Fuzz seed 4242, config-yaml attempts #112 and #238: complex keys reached a cast inside the reader
    // (InvalidCastException) instead of a ConfigException. Every section, and the top level, is checked.
    [TestMethod]
    [DataRow("top", "? [a, b]\n: 1\n")]
    [DataRow("top", "[a, b]: 1\n")]
    [DataRow("io", "io:\n  ? complex\n  : 1\n  [a, b]: 2\n")]
    [DataRow("io", "io:\n  [a, b]: 2\n")]
    [DataRow("io", "io:\n  {x: 1}: 2\n")]
    [DataRow("io", "io:\n  ? [a, b]\n  : 2\n")]
    [DataRow("train", "train:\n  [a, b]: 2\n")]
    [DataRow("params", "  [a, b]: 2\n")]
    public void ComplexYamlKeys_AreConfigErrors(string where, string addition)
    {
        string paramsBlock = "params:\n" + string.Join("\n", ConfigTests.Minimal.Split('\n').Select(l => "  " + l)) + "\n";
        string text = where == "params" ? paramsBlock + addition : where == "top" ? addition + paramsBlock : paramsBlock + addition;
        var e = Assert.ThrowsExactly<ConfigException>(() => ConfigReader.Parse(text), text);
        StringAssert.Contains(e.Message, "scalar", e.Message);
    }

    [TestMethod]
    public void DuplicateIoKeys_AreConfigErrors()
    {
        string text = "params:\n" + string.Join("\n", ConfigTests.Minimal.Split('\n').Select(l => "  " + l)) + "\nio:\n  name_model: a\n  'name_model': b\n";
        Assert.ThrowsExactly<ConfigException>(() => ConfigReader.Parse(text));
    }

    [TestMethod]
    [DataRow("io = [1, 2")]
    [DataRow("io = {")]
    public void MalformedYamlFlowCollections_AreConfigErrors(string line)
    {
        string text = "params:\n" + string.Join("\n", ConfigTests.Minimal.Split('\n').Select(l => "  " + l)) + "\nio:\n  x: " + line.Split(" = ")[1] + "\n";
        Assert.ThrowsExactly<ConfigException>(() => ConfigReader.Parse(text));
    }

    [TestMethod]
    public void ZipClaimingTooManyEntries_IsRefusedFromItsEndRecord()
    {
        var bytes = new byte[22];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bytes, 0x06054b50);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(10), 60000);
        string path = Path.Combine(Path.GetTempPath(), $"mblm-eocd-{Guid.NewGuid():N}.zip");
        File.WriteAllBytes(path, bytes);
        try
        {
            var e = Assert.ThrowsExactly<MblmFormatException>(() => new Microsoft.ML.MLContext().Mblm().LoadModel(path, out _));
            StringAssert.Contains(e.Message, "claims 60,000 zip entries");
        }
        finally { File.Delete(path); }
    }
}

/// <summary>Threading defaults for shared machines: set in the native environment before libtorch loads, never over the user's.</summary>
[TestClass]
public sealed class ThreadingTests
{
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "getenv")]
    private static extern IntPtr NativeGetenv([System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string name);

    [TestMethod]
    public void OpenMpDefaults_ReachTheNativeEnvironment_WhenDecided_UnlessTheUserSetThem()
    {
        _ = Mblm.Native.TorchRuntime.PatchedFiles; // the module initializer has run
        string decision = Mblm.Native.TorchRuntime.ThreadingDecision;
        bool shared = decision.StartsWith("shared-machine settings", StringComparison.Ordinal);
        Assert.IsTrue(shared || decision.StartsWith("libtorch's defaults", StringComparison.Ordinal), decision);
        foreach (var (name, value) in Mblm.Native.TorchRuntime.ThreadingDefaults)
        {
            string? native = System.Runtime.InteropServices.Marshal.PtrToStringUTF8(NativeGetenv(name));
            bool ours = Mblm.Native.TorchRuntime.AppliedThreadingDefaults.Contains($"{name}={value}");
            if (ours) Assert.AreEqual(value, native, decision);
            else Assert.AreEqual(Environment.GetEnvironmentVariable(name), native, "the user's own setting (or none) is kept: " + decision);
            if (!shared) Assert.IsFalse(ours, decision);
        }
    }

    [TestMethod]
    public void TrainerThreads_SetLibtorchThreads_AndAreValidated()
    {
        int before = TorchSharp.torch.get_num_threads();
        try
        {
            var model = RandomModel(Cfg([16, 8], [4, 3], [T(), T()]));
            var samples = new Mblm.Training.DocumentSource([System.Text.Encoding.UTF8.GetBytes("hello threads, hello cores")], 12);
            new Mblm.Training.Trainer(model, new Mblm.Training.TrainerOptions { Steps = 1, BatchSize = 1, Threads = 1 }).Train(samples);
            Assert.AreEqual(1, TorchSharp.torch.get_num_threads());
            Assert.ThrowsExactly<ArgumentException>(() => new Mblm.Training.TrainerOptions { Steps = 1, Threads = 0 }.Validate());
        }
        finally { TorchSharp.torch.set_num_threads(before); }
    }
}
