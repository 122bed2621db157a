using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Mblm.Config;
using Mblm.Model;
using Mblm.Weights;
using static TorchSharp.torch;

namespace Mblm.Tests;

/// <summary>
/// PyTorch <c>.pth</c> files made by the Python reference (tests/Mblm.Tests/Fixtures/pth, written by
/// tests/golden-gen/make_pth_fixtures.py): they load by content and give the reference's logits; hostile pickles and
/// archives are refused with typed errors before anything is unpickled or allocated.
/// </summary>
[TestClass]
public sealed class PyTorchCheckpointTests
{
    internal static string Fixture(string name) => Path.Combine(TestData.RepoRoot, "tests", "Mblm.Tests", "Fixtures", "pth", name);

    private static MblmConfig FixtureConfig() => ConfigReader.LoadModel(Fixture("config.json"));

    private static JsonElement Expected() => JsonDocument.Parse(File.ReadAllText(Fixture("expected.json"))).RootElement;

    /// <summary>Logits and loss of <paramref name="model"/> on the fixture input.</summary>
    internal static (float[] Logits, float Loss) Run(MblmModel model)
    {
        using var scope = NewDisposeScope();
        model.eval();
        var (ids, _) = TestData.ReadInput(Fixture("input.json"));
        using var noGrad = no_grad();
        var (loss, logits, _) = model.LossAndLogits(ids, null);
        return (logits.contiguous().data<float>().ToArray(), loss.item<float>());
    }

    internal static float[] ReferenceLogits()
    {
        var bytes = File.ReadAllBytes(Fixture("logits.bin"));
        var floats = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, floats, 0, bytes.Length);
        return floats;
    }

    [TestMethod]
    [DataRow("checkpoint.pth")]
    [DataRow("state-dict.pth")]
    [DataRow("state-dict-proto4.pth")]
    public void ReferencePth_Loads_AndGivesTheReferenceLogits(string file)
    {
        using var model = new MblmModel(FixtureConfig());
        ModelWeights.Load(model, Fixture(file));
        var (logits, loss) = Run(model);
        var expected = ReferenceLogits();
        Assert.AreEqual(expected.Length, logits.Length);
        double worst = logits.Zip(expected, (a, b) => Math.Abs(a - b)).Max();
        Assert.IsTrue(worst <= 1e-4, $"{file}: logits differ from the reference's by {worst}");
        double refLoss = Expected().GetProperty("loss").GetDouble();
        Assert.IsTrue(Math.Abs(loss - refLoss) / refLoss <= 1e-5, $"{file}: loss {loss} vs the reference's {refLoss}");
    }

    [TestMethod]
    public void TrainerCheckpoint_ReportsItsLayoutAndLoss_BareStateDictDoesNot()
    {
        var checkpoint = PyTorchCheckpoint.Load(Fixture("checkpoint.pth"));
        var bare = PyTorchCheckpoint.Load(Fixture("state-dict.pth"));
        try
        {
            Assert.IsTrue(checkpoint.IsTrainerCheckpoint);
            Assert.AreEqual(Expected().GetProperty("checkpoint_loss").GetDouble(), checkpoint.Loss);
            Assert.IsFalse(bare.IsTrainerCheckpoint);
            Assert.IsNull(bare.Loss);
            Assert.AreEqual(Expected().GetProperty("num_tensors").GetInt32(), checkpoint.Tensors.Count);
            CollectionAssert.AreEquivalent(bare.Tensors.Keys.ToList(), checkpoint.Tensors.Keys.ToList());
            foreach (var (name, t) in bare.Tensors)
                Assert.IsTrue(Same(t, checkpoint.Tensors[name]), name);
        }
        finally
        {
            foreach (var t in checkpoint.Tensors.Values.Concat(bare.Tensors.Values)) t.Dispose();
        }
    }

    [TestMethod]
    public void Pth_IsRecognisedByContent_NotByExtension()
    {
        string dir = TempDir();
        try
        {
            string renamed = Path.Combine(dir, "weights.safetensors");
            File.Copy(Fixture("checkpoint.pth"), renamed);
            using var model = new MblmModel(FixtureConfig());
            ModelWeights.Load(model, renamed);
            double worst = Run(model).Logits.Zip(ReferenceLogits(), (a, b) => Math.Abs(a - b)).Max();
            Assert.IsTrue(worst <= 1e-4, $"logits differ by {worst}");
        }
        finally { Directory.Delete(dir, true); }
    }

    [TestMethod]
    public void Save_ThenLoad_IsBitExact_InTheTrainerLayout()
    {
        string dir = TempDir();
        try
        {
            using var model = TestData.RandomModel(FixtureConfig(), seed: 3);
            string path = Path.Combine(dir, "model.pth");
            PyTorchCheckpoint.Save(model.state_dict(), path, loss: 1.5);
            var back = PyTorchCheckpoint.Load(path);
            try
            {
                Assert.IsTrue(back.IsTrainerCheckpoint);
                Assert.AreEqual(1.5, back.Loss);
                var state = model.state_dict();
                CollectionAssert.AreEquivalent(state.Keys.ToList(), back.Tensors.Keys.ToList());
                foreach (var (name, t) in state) Assert.IsTrue(Same(t, back.Tensors[name]), name);
            }
            finally { foreach (var t in back.Tensors.Values) t.Dispose(); }
        }
        finally { Directory.Delete(dir, true); }
    }

    [TestMethod]
    public void WrongModel_IsAStrictMismatch_NamingTheTensors()
    {
        var config = FixtureConfig();
        using var model = new MblmModel(config with { HiddenDims = [32, 16] });
        var e = Assert.ThrowsExactly<WeightsMismatchException>(() => ModelWeights.Load(model, Fixture("checkpoint.pth")));
        Assert.IsTrue(e.Mismatched.Count > 0, e.Message);
        StringAssert.Contains(e.Message, "checkpoint.pth");
    }

    // --- hostile files ---------------------------------------------------------------------------------------------

    [TestMethod]
    [DataRow("os", "system")]
    [DataRow("builtins", "eval")]
    [DataRow("mymodule", "Unknown")]
    public void GlobalOutsideTheAllowList_InGlobalOpcode_IsRefusedByName(string module, string name)
    {
        // The reference's own checkpoint with collections.OrderedDict swapped for the global: the pickle is otherwise intact.
        var pickle = Encoding.Latin1.GetString(EntryBytes(Fixture("checkpoint.pth"), "data.pkl"));
        StringAssert.Contains(pickle, "ccollections\nOrderedDict\n");
        var hostile = Encoding.Latin1.GetBytes(pickle.Replace("ccollections\nOrderedDict\n", $"c{module}\n{name}\n"));
        var e = AssertRefused<ForbiddenPickleGlobalException>(WithEntry(Fixture("checkpoint.pth"), "data.pkl", hostile));
        Assert.AreEqual(module, e.Module);
        Assert.AreEqual(name, e.Name);
        StringAssert.Contains(e.Message, $"'{module}.{name}'");
        StringAssert.Contains(e.Message, "data.pkl");
    }

    [TestMethod]
    [DataRow("os", "system")]
    [DataRow("builtins", "eval")]
    [DataRow("mymodule", "Unknown")]
    public void GlobalOutsideTheAllowList_InStackGlobal_IsRefusedByName(string module, string name)
    {
        // Protocol 4: PROTO 4, SHORT_BINUNICODE module, MEMOIZE, SHORT_BINUNICODE name, MEMOIZE, STACK_GLOBAL,
        // SHORT_BINUNICODE "ls", TUPLE1, REDUCE, STOP: Python's pickle.loads would run module.name("ls").
        var pickle = new List<byte> { 0x80, 4 };
        void Str(string s) { pickle.Add(0x8c); pickle.Add((byte)s.Length); pickle.AddRange(Encoding.ASCII.GetBytes(s)); pickle.Add(0x94); }
        Str(module);
        Str(name);
        pickle.Add(0x93);
        Str("ls");
        pickle.AddRange([0x85, 0x52, 0x2e]);
        var e = AssertRefused<ForbiddenPickleGlobalException>(WithEntry(Fixture("state-dict-proto4.pth"), "data.pkl", pickle.ToArray()));
        Assert.AreEqual($"{module}.{name}", $"{e.Module}.{e.Name}");
    }

    [TestMethod]
    public void StackGlobal_WithComputedOperands_IsRefused()
    {
        // The module string is the result of a REDUCE, not a literal: the guard cannot know it and refuses.
        byte[] pickle = [0x80, 4, 0x8c, 1, (byte)'x', 0x85, 0x52, 0x8c, 6, .. "system"u8, 0x93, 0x2e];
        var e = AssertRefused<MblmFormatException>(WithEntry(Fixture("state-dict-proto4.pth"), "data.pkl", pickle));
        StringAssert.Contains(e.Message, "STACK_GLOBAL");
    }

    [TestMethod]
    public void TensorLargerThanItsStorage_IsRefused_BeforeAllocation()
    {
        // data/0 cut to 8 bytes: the tensor that uses it needs more.
        string source = Fixture("checkpoint.pth");
        var hostile = WithEntry(source, "data/0", new byte[8]);
        var e = AssertRefused<MblmFormatException>(hostile);
        StringAssert.Contains(e.Message, "needs");
        StringAssert.Contains(e.Message, "holds 8");
        Assert.IsNotNull(e.Entry);
    }

    [TestMethod]
    public void HugeShapeInThePickle_IsRefused_NamingTheTensor()
    {
        // A BININT shape dimension rewritten to 2^31-1 elements: the storage entry cannot hold it.
        var pickle = EntryBytes(Fixture("checkpoint.pth"), "data.pkl");
        int at = IndexOfShape(pickle);
        pickle[at] = 0x4a; // BININT with the next 4 bytes
        var patched = pickle[..(at + 1)].Concat(BitConverter.GetBytes(int.MaxValue)).Concat(pickle[(at + 2)..]).ToArray();
        var e = AssertRefused<MblmFormatException>(WithEntry(Fixture("checkpoint.pth"), "data.pkl", patched));
        StringAssert.Contains(e.Message, "needs");
    }

    [TestMethod]
    public void ZeroStrideTensorOfBillionsOfElements_IsRefusedByTheMemoryBudget()
    {
        // The first tensor (shape (24,), stride (1,)) rewritten to shape (2^31-1,) with stride (0,): its view stays inside
        // the 96-byte storage, but the tensor itself would need 8 GiB.
        var pickle = EntryBytes(Fixture("checkpoint.pth"), "data.pkl");
        int at = IndexOfShape(pickle);
        byte[] original = [0x4b, 24, 0x85, 0x71, 11, 0x4b, 1, 0x85];
        CollectionAssert.AreEqual(original, pickle[at..(at + original.Length)], "the fixture's first tensor is not (24,) with stride (1,)");
        byte[] patched = [.. pickle[..at], 0x4a, .. BitConverter.GetBytes(int.MaxValue), 0x85, 0x71, 11, 0x4b, 0, 0x85, .. pickle[(at + original.Length)..]];
        long saved = Limits.MemoryBudgetBytes;
        try
        {
            Limits.MemoryBudgetBytes = 1L << 30;
            var e = AssertRefused<MblmFormatException>(WithEntry(Fixture("checkpoint.pth"), "data.pkl", patched));
            StringAssert.Contains(e.Message, "memory budget");
        }
        finally { Limits.MemoryBudgetBytes = saved; }
    }

    [TestMethod]
    public void LegacyPickleFormat_IsRefused_SayingHowToResave()
    {
        string dir = TempDir();
        try
        {
            string path = Path.Combine(dir, "old.pth");
            File.WriteAllBytes(path, [0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]);
            using var model = new MblmModel(FixtureConfig());
            var e = Assert.ThrowsExactly<MblmFormatException>(() => ModelWeights.Load(model, path));
            StringAssert.Contains(e.Message, "legacy");
        }
        finally { Directory.Delete(dir, true); }
    }

    [TestMethod]
    public void TwoPickleEntries_AreRefused()
    {
        string dir = TempDir();
        try
        {
            string path = Path.Combine(dir, "two.pth");
            File.Copy(Fixture("state-dict.pth"), path);
            using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
            using (var s = zip.CreateEntry("state-dict/other/data.pkl").Open()) s.Write([0x80, 2, 0x4e, 0x2e]);
            var e = Assert.ThrowsExactly<MblmFormatException>(() => PyTorchCheckpoint.Load(path));
            StringAssert.Contains(e.Message, "more than one");
        }
        finally { Directory.Delete(dir, true); }
    }

    [TestMethod]
    public void PickleGuard_AcceptsTheReferencesOwnPickles()
    {
        foreach (var file in new[] { "checkpoint.pth", "state-dict.pth", "state-dict-proto4.pth" })
            PickleGuard.Check(EntryBytes(Fixture(file), "data.pkl"), file, "data.pkl");
    }

    [TestMethod]
    public void PickleGuard_RefusesTruncationsAndTrailingBytes()
    {
        var pickle = EntryBytes(Fixture("checkpoint.pth"), "data.pkl");
        foreach (int cut in new[] { 1, 2, 7, pickle.Length / 2, pickle.Length - 1 })
            Assert.ThrowsExactly<MblmFormatException>(() => PickleGuard.Check(pickle.AsSpan(0, cut), "f", "data.pkl"), $"cut at {cut}");
        Assert.ThrowsExactly<MblmFormatException>(() => PickleGuard.Check([.. pickle, 0x4e], "f", "data.pkl"));
    }

    // --- helpers ---------------------------------------------------------------------------------------------------

    /// <summary>Same dtype, shape and values (bit for bit).</summary>
    internal static bool Same(Tensor a, Tensor b) =>
        a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.detach().cpu().eq(b.detach().cpu()).all().item<bool>();

    private static T AssertRefused<T>(string path) where T : Exception
    {
        try
        {
            using var model = new MblmModel(FixtureConfig());
            return Assert.ThrowsExactly<T>(() => ModelWeights.Load(model, path));
        }
        finally { Directory.Delete(Path.GetDirectoryName(path)!, true); }
    }

    private static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"mblm-pth-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>The bytes of the entry whose name ends in <paramref name="suffix"/>.</summary>
    internal static byte[] EntryBytes(string zipPath, string suffix)
    {
        using var zip = ZipFile.OpenRead(zipPath);
        var entry = zip.Entries.Single(e => e.FullName.EndsWith("/" + suffix, StringComparison.Ordinal));
        using var s = entry.Open();
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }

    /// <summary>A copy of the zip (in a fresh temporary folder) with the entry ending in <paramref name="suffix"/> replaced.</summary>
    private static string WithEntry(string zipPath, string suffix, byte[] content)
    {
        string path = Path.Combine(TempDir(), "hostile.pth");
        using (var source = ZipFile.OpenRead(zipPath))
        using (var target = ZipFile.Open(path, ZipArchiveMode.Create))
            foreach (var entry in source.Entries)
            {
                using var to = target.CreateEntry(entry.FullName, CompressionLevel.NoCompression).Open();
                if (entry.FullName.EndsWith("/" + suffix, StringComparison.Ordinal)) to.Write(content);
                else { using var from = entry.Open(); from.CopyTo(to); }
            }
        return path;
    }

    // The first tensor shape in the pickle: BININT1/BININT2 dims inside the TUPLE after the storage offset. Torch writes
    // `K <offset>` then `K <d0>` ... : find the first BINPERSID's REDUCE arguments by pattern "Q K\x00 K".
    private static int IndexOfShape(byte[] pickle)
    {
        for (int i = 0; i + 4 < pickle.Length; i++)
            if (pickle[i] == 0x51 && pickle[i + 1] == 0x4b && pickle[i + 2] == 0 && pickle[i + 3] == 0x4b) return i + 3;
        throw new InvalidOperationException("no tensor shape found in the pickle");
    }
}
