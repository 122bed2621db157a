using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Mblm.MLNet;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Mblm.Tests;

/// <summary>
/// Hostile and damaged pipeline files (docs/pipeline-format.md, "Limits", "Integrity", "Errors"): work bounded by what an
/// entry holds and checked before it is done, checksums, options and stages checked at load, and one exception type —
/// <see cref="MblmFormatException"/> naming the file and the entry — for every problem, with nothing left behind.
/// </summary>
[TestClass]
public sealed class PipelineHardeningTests
{
    private const string Manifest = "mblm-pipeline.json";
    private static readonly string LmFixture = Path.Combine(TestData.RepoRoot, "tests", "Mblm.Tests", "Fixtures", "v1-language-model.zip");
    private static readonly string VqaFixture = Path.Combine(TestData.RepoRoot, "tests", "Mblm.Tests", "Fixtures", "v1-answer-classifier.zip");
    private static readonly List<string> Temps = [];
    // NormalizeText -> language model (completions of 4 bytes), saved by this library: with checksums.
    private static string _saved = null!;

    [ClassInitialize]
    public static void SaveOne(TestContext _)
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(MLNetTests.Corpus.Take(8).Select(t => new TextRow { Text = t }).ToList());
        using var model = ml.Transforms.Text.NormalizeText("Text")
            .Append(ml.Mblm().LanguageModel(MLNetTests.TinyOptions(maxNewBytes: 4) with { MaxSteps = 1 })).Fit(data);
        _saved = Temp("saved.zip");
        ml.Mblm().SaveModel(model, data.Schema, _saved);
    }

    [ClassCleanup]
    public static void Cleanup()
    {
        foreach (var t in Temps)
        {
            if (File.Exists(t)) File.Delete(t);
            if (Directory.Exists(t)) Directory.Delete(t, recursive: true);
        }
    }

    // ---- building hostile files ----

    private static string Temp(string name)
    {
        string path = Path.Combine(Path.GetTempPath(), $"mblm-{Guid.NewGuid():N}-{name}");
        Temps.Add(path);
        return path;
    }

    private static string TempDir()
    {
        string dir = Temp("dir");
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    private static string Sha256(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

    /// <summary>A zip's entries, in order.</summary>
    private static Dictionary<string, byte[]> Entries(string path)
    {
        using var zip = ZipFile.OpenRead(path);
        var result = new Dictionary<string, byte[]>();
        foreach (var e in zip.Entries)
        {
            using var s = e.Open();
            var ms = new MemoryStream();
            s.CopyTo(ms);
            result[e.FullName] = ms.ToArray();
        }
        return result;
    }

    /// <summary>Writes a zip (weights and <paramref name="stored"/> entries uncompressed, as the writer does).</summary>
    private static byte[] Zip(IEnumerable<KeyValuePair<string, byte[]>> entries, params string[] stored)
    {
        var ms = new MemoryStream();
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
            foreach (var (name, data) in entries)
            {
                bool store = name.EndsWith(".safetensors") || stored.Contains(name);
                using var s = zip.CreateEntry(name, store ? CompressionLevel.NoCompression : CompressionLevel.Fastest).Open();
                s.Write(data);
            }
        return ms.ToArray();
    }

    private static string Save(byte[] zip, string name = "hostile.zip")
    {
        string path = Temp(name);
        File.WriteAllBytes(path, zip);
        return path;
    }

    /// <summary>
    /// A copy of <paramref name="source"/> with its entries edited. With <paramref name="reseal"/>, a manifest with checksums
    /// gets them recomputed, so that the edit itself is what the reader meets (not a checksum mismatch).
    /// </summary>
    private static string Edited(string source, Action<Dictionary<string, byte[]>> edit, bool reseal = true, params string[] stored)
    {
        var entries = Entries(source);
        edit(entries);
        if (reseal && entries.TryGetValue(Manifest, out var m))
        {
            JsonObject? manifest = null;
            try { manifest = JsonNode.Parse(m) as JsonObject; } catch (Exception) { }
            if (manifest?["sha256"] is JsonObject)
            {
                var sums = new JsonObject();
                foreach (var (name, data) in entries.Where(e => e.Key != Manifest).OrderBy(e => e.Key, StringComparer.Ordinal)) sums[name] = Sha256(data);
                manifest["sha256"] = sums;
                entries[Manifest] = Utf8(manifest.ToJsonString());
            }
        }
        return Save(Zip(entries, stored));
    }

    private static void EditJson(Dictionary<string, byte[]> entries, string name, Action<JsonObject> edit)
    {
        var json = JsonNode.Parse(entries[name])!.AsObject();
        edit(json);
        entries[name] = Utf8(json.ToJsonString());
    }

    internal static string EditedJson(string source, string entry, Action<JsonObject> edit, bool reseal = true) =>
        Edited(source, es => EditJson(es, entry, edit), reseal);

    /// <summary>Sets the uncompressed size a zip declares for an entry (central directory and local header), leaving its data.</summary>
    private static byte[] Declare(byte[] zip, string name, uint size)
    {
        var nameBytes = Utf8(name);
        int patched = 0;
        for (int i = 0; i + 46 <= zip.Length; i++)
        {
            uint sig = BinaryPrimitives.ReadUInt32LittleEndian(zip.AsSpan(i));
            if (sig == 0x02014b50 && Named(i + 46, BinaryPrimitives.ReadUInt16LittleEndian(zip.AsSpan(i + 28))))
            {
                BinaryPrimitives.WriteUInt32LittleEndian(zip.AsSpan(i + 24), size);
                patched++;
            }
            else if (sig == 0x04034b50 && Named(i + 30, BinaryPrimitives.ReadUInt16LittleEndian(zip.AsSpan(i + 26))))
            {
                BinaryPrimitives.WriteUInt32LittleEndian(zip.AsSpan(i + 22), size);
                patched++;
            }
        }
        Assert.AreEqual(2, patched, $"{name}: the local header and the central directory record");
        return zip;

        bool Named(int at, int length) => length == nameBytes.Length && at + length <= zip.Length && zip.AsSpan(at, length).SequenceEqual(nameBytes);
    }

    /// <summary>
    /// A zip of <paramref name="entries"/> in which <paramref name="name"/> is <paramref name="bytes"/> spaces, highly
    /// compressed: a small file with an entry that inflates to a lot.
    /// </summary>
    private static byte[] Bomb(IEnumerable<KeyValuePair<string, byte[]>> entries, string name, long bytes)
    {
        var ms = new MemoryStream();
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (n, data) in entries.Where(e => e.Key != name))
                using (var s = zip.CreateEntry(n, CompressionLevel.Fastest).Open()) s.Write(data);
            using var bomb = zip.CreateEntry(name, CompressionLevel.SmallestSize).Open();
            var block = new byte[1 << 20];
            Array.Fill(block, (byte)' ');
            for (long done = 0; done < bytes; done += block.Length) bomb.Write(block, 0, (int)Math.Min(block.Length, bytes - done));
        }
        return ms.ToArray();
    }

    /// <summary>The load fails with an <see cref="MblmFormatException"/> naming the file (and <paramref name="entry"/>).</summary>
    internal static MblmFormatException Refused(string path, string? entry = null, MLContext? ml = null)
    {
        var e = Assert.ThrowsExactly<MblmFormatException>(() => (ml ?? new MLContext()).Mblm().LoadModel(path, out _));
        Assert.AreEqual(path, e.FileName, e.Message);
        StringAssert.StartsWith(e.Message, $"'{path}'");
        if (entry is not null) Assert.AreEqual(entry, e.Entry, e.Message);
        return e;
    }

    private static void Loads(string path, MLContext? ml = null)
    {
        using var model = (IDisposable)(ml ?? new MLContext()).Mblm().LoadModel(path, out _);
    }

    // Bytes allocated by this thread while running `action` (the managed side of "work bounded by what the file claims").
    private static long Allocated(Action action)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        action();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    // ---- 1. work bounded by what an entry holds ----

    [TestMethod]
    public void EntriesThatInflateTo1GiB_AreRefusedBeforeTheyAreRead()
    {
        // The manifest: 1 GiB of spaces (about 1 MB in the file).
        string path = Save(Bomb([], Manifest, 1L << 30));
        MblmFormatException e = null!;
        long allocated = Allocated(() => e = Refused(path, Manifest));
        StringAssert.Contains(e.Message, "inflates to 1 GiB; a JSON entry holds at most 1 MiB");
        Assert.IsTrue(allocated < 32 << 20, $"allocated {allocated:N0} bytes");

        // stage.json of a real pipeline (its ML.NET stage loads first).
        path = Save(Bomb(Entries(_saved), "stages/001/stage.json", 1L << 30));
        allocated = Allocated(() => e = Refused(path, "stages/001/stage.json"));
        StringAssert.Contains(e.Message, "inflates to 1 GiB; a JSON entry holds at most 1 MiB");
        Assert.IsTrue(allocated < 64 << 20, $"allocated {allocated:N0} bytes");
    }

    [TestMethod]
    public void WeightsLargerThanTheirConfigImplies_AreRefusedBeforeTheyAreRead()
    {
        // A weights entry that declares 3 GiB (the data is the real 100 KB: only the claim is checked, nothing is read).
        var zip = Zip(Entries(_saved));
        string path = Save(Declare(zip, "stages/001/model.safetensors", 3u << 30));
        MblmFormatException e = null!;
        long allocated = Allocated(() => e = Refused(path, "stages/001/model.safetensors"));
        StringAssert.Contains(e.Message, "inflates to 3 GiB; the weights of the model in stages/001/model.json (");
        StringAssert.Contains(e.Message, "parameters) take at most 16.");
        Assert.IsTrue(allocated < 64 << 20, $"allocated {allocated:N0} bytes");

        // A model beyond the memory budget: refused naming the budget, before the weights are read or the model built.
        long saved = Limits.MemoryBudgetBytes;
        try
        {
            Limits.MemoryBudgetBytes = 64 << 10;
            e = Refused(_saved, "stages/001/model.json");
            StringAssert.Contains(e.Message, "more than the memory budget of 64 KiB");
        }
        finally { Limits.MemoryBudgetBytes = saved; }
    }

    [TestMethod]
    public void LyingZipHeaders_DoNotGetPast()
    {
        // A stored stage.json of 5 MB that declares 100 bytes: reading stops at the declared size, with an error.
        string big = "{\"inputColumnName\": \"Text\"" + new string(' ', 5 << 20) + "}";
        string path = Edited(_saved, es => es["stages/001/stage.json"] = Utf8(big), reseal: true, "stages/001/stage.json");
        path = Save(Declare(File.ReadAllBytes(path), "stages/001/stage.json", 100));
        var e = Refused(path, "stages/001/stage.json");
        StringAssert.Contains(e.Message, "holds more than its declared 100 bytes");

        // A stage.json that declares more than it holds.
        var entries = Entries(_saved);
        path = Save(Declare(Zip(entries), "stages/001/stage.json", (uint)entries["stages/001/stage.json"].Length + 1000));
        Refused(path, "stages/001/stage.json");

        // Stored weights that declare 4 bytes fewer than they hold: the safetensors reader finds its data cut short, and the
        // entry's check finds why.
        path = Save(Declare(Zip(entries), "stages/001/model.safetensors", (uint)entries["stages/001/model.safetensors"].Length - 4));
        e = Refused(path, "stages/001/model.safetensors");
        StringAssert.Contains(e.Message, "holds more than its declared");
        Assert.IsInstanceOfType<MblmFormatException>(e.InnerException, "the safetensors reader's error is inside");
    }

    [TestMethod]
    public void DeepNesting_InAnyJsonEntry_IsATypedError()
    {
        string deep = new string('[', 100_000) + new string(']', 100_000);
        foreach (var entry in new[] { "stages/001/stage.json", "stages/001/model.json", Manifest })
        {
            string path = Edited(_saved, es =>
            {
                string text = Encoding.UTF8.GetString(es[entry]);
                int brace = text.IndexOf('{');
                es[entry] = Utf8(text[..(brace + 1)] + "\"deep\": " + deep + ", " + text[(brace + 1)..]);
            });
            var e = Refused(path, entry);
            StringAssert.Contains(e.Message, "64", $"{entry}: {e.Message}");
        }
    }

    [TestMethod]
    public void TooManyEntriesOrStages_AreRefused()
    {
        var entries = Entries(_saved);
        for (int i = 0; i < 10_000; i++) entries[$"junk/{i}"] = [];
        var e = Refused(Save(Zip(entries)));
        StringAssert.Contains(e.Message, "claims 10,006 zip entries; at most 10,000 are read");

        string path = EditedJson(_saved, Manifest, m =>
        {
            var stages = m["stages"]!.AsArray();
            for (int i = stages.Count; i <= 1000; i++) stages.Add(new JsonObject { ["kind"] = "mlnet", ["folder"] = $"stages/{i:D4}/" });
        });
        e = Refused(path, Manifest);
        StringAssert.Contains(e.Message, "lists 1,001 stages; a pipeline file has at most 1,000");
    }

    [TestMethod]
    public void NestedMlNetFiles_AreBoundedAndChecked_AndLeaveNoTemporaryFiles()
    {
        string temp = TempDir();
        var ml = new MLContext { TempFilePath = temp };
        var inner = Entries(_saved)["stages/000/mlnet.zip"];

        // Garbage instead of a zip (ML.NET itself would leave an empty temporary folder behind).
        var random = new byte[4000];
        new Random(1).NextBytes(random);
        var e = Refused(Edited(_saved, es => es["stages/000/mlnet.zip"] = random), "stages/000/mlnet.zip", ml);
        StringAssert.Contains(e.Message, "is not an ML.NET model file (not a zip archive");
        e = Refused(Edited(_saved, es => es["input-schema.zip"] = random), "input-schema.zip", ml);

        // A zip that is not an ML.NET model.
        var notAModel = Zip([new("hello.txt", Utf8("hello"))]);
        e = Refused(Edited(_saved, es => es["stages/000/mlnet.zip"] = notAModel), "stages/000/mlnet.zip", ml);
        StringAssert.Contains(e.Message, "is not an ML.NET model file that ML.NET can load");

        // An ML.NET model whose entry declares 2 GiB; one with 10,001 entries; one nested 100 folders deep.
        var inflating = Declare(Zip(Entries(Save(inner))), "TransformerChain/Model.key", 2u << 30);
        e = Refused(Edited(_saved, es => es["stages/000/mlnet.zip"] = inflating), "stages/000/mlnet.zip", ml);
        StringAssert.Contains(e.Message, "inflates to more than 1 GiB");
        var many = Entries(Save(inner));
        for (int i = 0; i < 10_000; i++) many[$"junk/{i}"] = [];
        e = Refused(Edited(_saved, es => es["stages/000/mlnet.zip"] = Zip(many)), "stages/000/mlnet.zip", ml);
        StringAssert.Contains(e.Message, "claims 10,004 zip entries");
        var deep = Entries(Save(inner));
        deep[string.Concat(Enumerable.Repeat("d/", 100)) + "x"] = [];
        e = Refused(Edited(_saved, es => es["stages/000/mlnet.zip"] = Zip(deep)), "stages/000/mlnet.zip", ml);
        StringAssert.Contains(e.Message, "nested more than 64 folders deep");

        Loads(_saved, ml);
        CollectionAssert.AreEqual(Array.Empty<string>(), Directory.GetFileSystemEntries(temp), "ML.NET's temporary folders are gone");
    }

    // ---- 2. options read from a file are checked as options set in code ----

    [TestMethod]
    public void OptionsFromAFile_GoThroughTheSameChecks_WithUpperBounds()
    {
        // In code.
        var code = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new MLContext().Mblm().LanguageModel(MLNetTests.TinyOptions() with { MaxNewBytes = int.MaxValue }));
        StringAssert.Contains(code.Message, "MblmLanguageModelTrainer.Options.MaxNewBytes must be in 0..65536 (got 2147483647)");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new MLContext().Mblm().LanguageModel(MLNetTests.TinyOptions() with { ScoringBatchSize = 5000 }));

        // From the file: the same rule, naming the file, the entry and the option.
        foreach (var source in new[] { _saved, LmFixture })
        {
            var e = Refused(EditedJson(source, "stages/001/stage.json", s => s["maxNewBytes"] = int.MaxValue), "stages/001/stage.json");
            StringAssert.Contains(e.Message, "option 'maxNewBytes': MblmLanguageModelTrainer.Options.MaxNewBytes must be in 0..65536 (got 2147483647)");
        }
        foreach (var (key, value, expected) in new (string, JsonNode?, string)[]
                 {
                     ("scoringBatchSize", 1_000_000, "ScoringBatchSize must be in 1..4096 (got 1000000)"),
                     ("scoringBatchSize", 0, "ScoringBatchSize must be in 1..4096 (got 0)"),
                     ("sampling", null, "option 'sampling': MblmLanguageModelTrainer.Options.Sampling is required"),
                     ("sampling", JsonNode.Parse("""{"temperature": -1}"""), "option 'sampling'"),
                     ("sampling", JsonNode.Parse("""{"stopSequences": [[999999]]}"""), "Sampling has stop sequences with token ids outside [0, num_tokens) = [0, 257)"),
                     ("sampling", JsonNode.Parse("""{"stopSequences": null}"""), "Sampling needs StopSequences: a list of token lists"),
                     ("sampling", JsonNode.Parse("""{"overflow": 9}"""), "Sampling has Overflow 9; expected Stop or SlidingWindow"),
                     ("completionColumnName", "BitsPerByte", "output column names must differ"),
                     ("inputColumnName", "", "option 'inputColumnName'"),
                     ("learningRate", "NaN", "option 'learningRate'"),
                 })
        {
            var e = Refused(EditedJson(_saved, "stages/001/stage.json", s => s[key] = value?.DeepClone()), "stages/001/stage.json");
            StringAssert.Contains(e.Message, expected);
        }

        // The answer classifier: image settings.
        var vqa = Refused(EditedJson(VqaFixture, "stages/001/stage.json", s => s["image"]!["resizeWidth"] = 100_000), "stages/001/stage.json");
        StringAssert.Contains(vqa.Message, "must be in 1..4096 (got 100000x6)");
        vqa = Refused(EditedJson(VqaFixture, "stages/001/stage.json", s => s["image"] = null), "stages/001/stage.json");
        StringAssert.Contains(vqa.Message, "Image is required");
        vqa = Refused(EditedJson(VqaFixture, "stages/001/stage.json", s => s["image"]!["encoding"] = 7), "stages/001/stage.json");
        StringAssert.Contains(vqa.Message, "Encoding must be Pixels, Jpeg or Png");
    }

    [TestMethod]
    public void BrokenManifests_AreRefused_AndEmptyPipelinesAreNotWritten()
    {
        foreach (var (edit, expected) in new (Action<JsonObject>, string)[]
                 {
                     (m => m["stages"] = null, "has no \"stages\" list"),
                     (m => m["stages"] = new JsonArray(), "lists no stages: a pipeline file holds at least one stage"),
                     (m => m["stages"]!.AsArray()[1] = null, "stage 1 of \"stages\" is null"),
                     (m => m["stages"]![1]!["kind"] = null, "stage 1 of \"stages\" has no \"kind\""),
                     (m => m["stages"]![1]!["folder"] = "../../etc/", "has folder '../../etc/'"),
                     (m => m["stages"]![1]!["folder"] = null, "has folder ''"),
                     (m => m["stages"]![1]!["folder"] = "stages/000/", "which an earlier stage has too"),
                     (m => m["stages"]![1]!["version"] = 0, "has layout version 0; versions start at 1"),
                     (m => m["version"] = 0, "has format version 0"),
                     (m => m["version"] = "one", "is not a valid manifest"),
                     (m => m.Remove("format"), "is not an MBLM pipeline file (format ''"),
                     (m => m["stages"] = new JsonObject(), "is not a valid manifest"),
                 })
        {
            string path = EditedJson(_saved, Manifest, edit);
            var e = Refused(path);
            StringAssert.Contains(e.Message, expected);
        }

        // Saving a pipeline without stages is refused, so that what SaveModel writes always loads.
        var ml = new MLContext();
        var data = ml.Data.LoadFromEnumerable(new[] { new TextRow { Text = "x" } });
        string empty = Temp("empty.zip");
        Assert.ThrowsExactly<ArgumentException>(() => ml.Mblm().SaveModel(new TransformerChain<ITransformer>(), data.Schema, empty));
        Assert.IsFalse(File.Exists(empty));
    }

    // ---- 3. integrity ----

    [TestMethod]
    public void Checksums_AreWritten_ForEveryEntry_AndVerified()
    {
        var entries = Entries(_saved);
        var manifest = JsonNode.Parse(entries[Manifest])!.AsObject();
        Assert.AreEqual(1, (int)manifest["version"]!);
        var sums = manifest["sha256"]!.AsObject();
        CollectionAssert.AreEquivalent(entries.Keys.Where(k => k != Manifest).ToArray(), sums.Select(kv => kv.Key).ToArray());
        foreach (var (name, sum) in sums) Assert.AreEqual(Sha256(entries[name]), (string)sum!, name);

        // One flipped bit in a stored weight loads and changes predictions without checksums; with them it is refused.
        byte[] Flip(byte[] d) { var c = (byte[])d.Clone(); c[^3] ^= 0x10; return c; }
        var e = Refused(Edited(_saved, es => es["stages/001/model.safetensors"] = Flip(es["stages/001/model.safetensors"]), reseal: false), "stages/001/model.safetensors");
        Assert.AreEqual($"'{e.FileName}', entry 'stages/001/model.safetensors': does not match its SHA-256 checksum in the manifest: the file is damaged", e.Message);
        // In the header (the safetensors reader fails first): still reported as damage, with the reader's error inside.
        e = Refused(Edited(_saved, es => { var w = es["stages/001/model.safetensors"]; w[20] ^= 0x01; }, reseal: false), "stages/001/model.safetensors");
        StringAssert.Contains(e.Message, "SHA-256");
        // A changed digit in stage.json, still valid JSON.
        e = Refused(Edited(_saved, es => es["stages/001/stage.json"] = Utf8(Encoding.UTF8.GetString(es["stages/001/stage.json"]).Replace("\"maxNewBytes\": 4", "\"maxNewBytes\": 5")), reseal: false),
            "stages/001/stage.json");
        StringAssert.Contains(e.Message, "SHA-256");
        // The nested ML.NET file.
        Refused(Edited(_saved, es => es["stages/000/mlnet.zip"] = Flip(es["stages/000/mlnet.zip"]), reseal: false), "stages/000/mlnet.zip");

        // The list itself: an entry without a checksum, a checksum without an entry, a malformed one.
        e = Refused(EditedJson(_saved, Manifest, m => m["sha256"]!.AsObject().Remove("stages/001/model.json"), reseal: false), "stages/001/model.json");
        StringAssert.Contains(e.Message, "has no checksum in the manifest");
        e = Refused(EditedJson(_saved, Manifest, m => m["sha256"]!["stages/009/model.json"] = new string('0', 64), reseal: false), "stages/009/model.json");
        StringAssert.Contains(e.Message, "missing from the file");
        e = Refused(EditedJson(_saved, Manifest, m => m["sha256"]!["stages/001/model.json"] = "abc", reseal: false), Manifest);
        StringAssert.Contains(e.Message, "expected 64 lower-case hex digits");
    }

    [TestMethod]
    public void FilesWithoutChecksums_StillLoad_WithAWarning()
    {
        foreach (var (fixture, expectWarning) in new[] { (LmFixture, true), (VqaFixture, true), (_saved, false) })
        {
            var ml = new MLContext();
            var warnings = new List<string>();
            ml.Log += (_, e) => { if (e.Kind == ChannelMessageKind.Warning) warnings.Add(e.Message); };
            Loads(fixture, ml);
            Assert.AreEqual(expectWarning ? 1 : 0, warnings.Count(w => w.Contains("has no checksums")), string.Join("\n", warnings));
        }
        // Without checksums, damage is not detected: the same flipped bit loads (this is what the warning is about).
        Loads(Edited(LmFixture, es => { var w = es["stages/001/model.safetensors"]; w[^3] ^= 0x10; }));
    }

    // ---- 4. consistency at load ----

    [TestMethod]
    public void SwappedOrInconsistentStages_AreRefusedAtLoad()
    {
        var vqa = Entries(VqaFixture);
        // Weights of another stage: named in the error, with the mismatching tensors.
        var e = Refused(Edited(LmFixture, es => es["stages/001/model.safetensors"] = vqa["stages/001/model.safetensors"]), "stages/001/model.safetensors");
        StringAssert.Contains(e.Message, "does not fit the model of stages/001/model.json: shape mismatch");
        StringAssert.Contains(e.Message, "to_logits.weight: file [260, 16] vs model [257, 16]");
        // A model.json from another stage.
        e = Refused(Edited(LmFixture, es => es["stages/001/model.json"] = vqa["stages/001/model.json"]), "stages/001/model.safetensors");

        // A stage.json of another kind of stage, either way round.
        e = Refused(Edited(LmFixture, es => es["stages/001/stage.json"] = vqa["stages/001/stage.json"]), "stages/001/stage.json");
        StringAssert.Contains(e.Message,
            "lacks 'inputColumnName', 'bitsPerByteColumnName', 'featuresColumnName', 'completionColumnName', 'maxNewBytes', 'sampling', which the stage.json of every language-model stage has");
        e = Refused(EditedJson(LmFixture, Manifest, m => m["stages"]![1]!["kind"] = "answer-classifier"), "stages/001/stage.json");
        StringAssert.Contains(e.Message, "which the stage.json of every answer-classifier stage has");

        // The answers.
        foreach (var (answers, expected) in new (JsonNode?, string)[]
                 {
                     (new JsonArray(), "'answers' is empty"),
                     (null, "has no answers"),
                     (JsonNode.Parse("""["yes", null]"""), "'answers' [1] is null"),
                     (JsonNode.Parse("""["yes", "no", "yes"]"""), "'answers' lists 'yes' twice"),
                     (new JsonArray(new string('x', 600)), "takes 602 tokens; after the shortest prompt the model's context of 512 leaves 506"),
                     ("yes", "has an invalid answers"),
                 })
        {
            e = Refused(EditedJson(VqaFixture, "stages/001/stage.json", s => s["answers"] = answers), "stages/001/stage.json");
            StringAssert.Contains(e.Message, expected);
        }

        // Answers that are no longer the label's key values (the MapValueToKey stage before it): fewer, or re-ordered.
        e = Refused(EditedJson(VqaFixture, "stages/001/stage.json", s => s["answers"] = new JsonArray("yes", "no", "0")), "stages/001/stage.json");
        StringAssert.Contains(e.Message, "'answers' (3) differ from the key values (28) of the label column 'Label' the stages before produce, from position 3 on");
        e = Refused(EditedJson(VqaFixture, "stages/001/stage.json", s =>
        {
            var a = s["answers"]!.AsArray();
            var first = a[0]!.DeepClone();
            a.RemoveAt(0);
            a.Add(first);
        }), "stages/001/stage.json");
        StringAssert.Contains(e.Message, "from position 0 on");

        // Stages in another order: a stage that does not get the columns it reads.
        e = Refused(EditedJson(LmFixture, Manifest, m =>
        {
            var stages = m["stages"]!.AsArray();
            var last = stages[2]!.DeepClone();
            stages.RemoveAt(2);
            stages.Insert(1, last);
        }), "stages/002/");
        StringAssert.Contains(e.Message, "the mlnet stage does not accept the columns the stages before it produce");

        // A model.json the stage cannot use.
        e = Refused(EditedJson(LmFixture, "stages/001/model.json", c => c["pad_token_id"] = 100), "stages/001/model.json");
        StringAssert.Contains(e.Message, "a byte model needs num_tokens >= 257 and pad_token_id >= 256 (got 257 and 100)");
        e = Refused(EditedJson(LmFixture, "stages/001/model.json", c => c["hidden_dims"] = JsonNode.Parse("[1000000, 16]")), "stages/001/model.json");
    }

    // ---- 5. every failure is an MblmFormatException ----

    private static readonly (string Name, Func<byte[], byte[]> Apply)[] Damage =
    [
        ("empty", _ => []),
        ("half", d => d[..(d.Length / 2)]),
        ("random", d => { var r = new byte[Math.Max(d.Length, 16)]; new Random(d.Length).NextBytes(r); return r; }),
        ("null", _ => Utf8("null")),
        ("array", _ => Utf8("[]")),
        ("object", _ => Utf8("{}")),
        ("string", _ => Utf8("\"x\"")),
        ("number", _ => Utf8("1e999")),
        ("flipped bit", d => { var c = (byte[])d.Clone(); if (c.Length > 0) c[c.Length / 2] ^= 0x04; return c; }),
    ];

    private static readonly JsonNode?[] Values = [null, "x", -1, 1e300, long.MaxValue, new JsonArray(), new JsonObject(), true];

    // Loads the file: it either loads or fails with an MblmFormatException naming it; anything else fails the test.
    private static void LoadsOrRefuses(string path, MLContext ml, string what)
    {
        try { Loads(path, ml); }
        catch (MblmFormatException e) { Assert.AreEqual(path, e.FileName, $"{what}: {e.Message}"); }
        catch (Exception e) { Assert.Fail($"{what}: {e.GetType().Name}: {e.Message}\n{e.StackTrace}"); }
        finally { File.Delete(path); }
    }

    [TestMethod]
    public void DamagedEntries_AlwaysGiveAnMblmFormatException_AndLeaveNothingBehind()
    {
        string temp = TempDir();
        var ml = new MLContext { TempFilePath = temp };
        var clock = Stopwatch.StartNew();
        foreach (var source in new[] { _saved, LmFixture, VqaFixture })
            foreach (var entry in Entries(source).Keys)
            {
                foreach (var (name, apply) in Damage)
                    LoadsOrRefuses(Edited(source, es => es[entry] = apply(es[entry])), ml, $"{Path.GetFileName(source)} {entry} {name}");
                LoadsOrRefuses(Edited(source, es => es.Remove(entry)), ml, $"{Path.GetFileName(source)} without {entry}");
            }
        CollectionAssert.AreEqual(Array.Empty<string>(), Directory.GetFileSystemEntries(temp));
        Assert.IsTrue(clock.Elapsed < TimeSpan.FromMinutes(3), $"took {clock.Elapsed}");
    }

    [TestMethod]
    public void EditedJsonValues_AlwaysGiveAnMblmFormatException()
    {
        var ml = new MLContext { TempFilePath = TempDir() };
        foreach (var source in new[] { _saved, VqaFixture })
            foreach (var entry in new[] { Manifest, "stages/001/stage.json", "stages/001/model.json" })
            {
                var json = JsonNode.Parse(Entries(source)[entry])!.AsObject();
                // Every key, and every key of the objects one level down (sampling, image, training, each stage).
                var paths = new List<string[]>();
                foreach (var (key, value) in json)
                {
                    paths.Add([key]);
                    if (value is JsonObject o) paths.AddRange(o.Select(kv => new[] { key, kv.Key }));
                    if (value is JsonArray a && a.Count > 0 && a[0] is JsonObject first) paths.AddRange(first.Select(kv => new[] { key, "0", kv.Key }));
                }
                foreach (var p in paths)
                    foreach (var v in Values)
                    {
                        string path = EditedJson(source, entry, root =>
                        {
                            JsonNode node = root;
                            foreach (var step in p[..^1]) node = int.TryParse(step, out int i) ? node[i]! : node[step]!;
                            if (node is JsonObject o) o[p[^1]] = v?.DeepClone();
                        }, reseal: entry != Manifest); // the manifest's own edits (of checksums too) are what is tested
                        LoadsOrRefuses(path, ml, $"{Path.GetFileName(source)} {entry} {string.Join(".", p)} = {v?.ToJsonString() ?? "null"}");
                    }
            }
        CollectionAssert.AreEqual(Array.Empty<string>(), Directory.GetFileSystemEntries(ml.TempFilePath));
    }

    [TestMethod]
    public void NotAPipelineFile_IsAnMblmFormatException()
    {
        var e = Refused(Save(Utf8("hello"), "text.zip"));
        StringAssert.Contains(e.Message, "is not an MBLM pipeline file (not a zip archive");
        e = Refused(Save(Zip([new("readme.txt", Utf8("hi"))])));
        StringAssert.Contains(e.Message, "it has no 'mblm-pipeline.json'");
        string dir = TempDir();
        Assert.ThrowsExactly<MblmFormatException>(() => new MLContext().Mblm().LoadModel(dir, out _));
        Assert.ThrowsExactly<FileNotFoundException>(() => new MLContext().Mblm().LoadModel(Temp("missing.zip"), out _));
        // Two entries of one name.
        var ms = new MemoryStream();
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
            foreach (var (name, data) in Entries(_saved).Append(new("stages/001/model.json", Utf8("{}"))))
                using (var s = zip.CreateEntry(name).Open()) s.Write(data);
        e = Refused(Save(ms.ToArray()), "stages/001/model.json");
        StringAssert.Contains(e.Message, "appears twice");
    }

    [TestMethod]
    public void APooledHeadEntry_IsCheckedLikeTheWeights()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(TextClassifierTests.Rows(16, seed: 1));
        using var model = ml.Transforms.Conversion.MapValueToKey("Label", "Kind")
            .Append(ml.MulticlassClassification.Trainers.MblmTextClassifier(TextClassifierTests.TinyOptions with { MaxSteps = 1 })).Fit(data);
        string saved = Temp("pooled.zip");
        ml.Mblm().SaveModel(model, data.Schema, saved);
        string head = Entries(saved).Keys.Single(k => k.EndsWith("/head.safetensors", StringComparison.Ordinal));
        Loads(saved);

        // Missing (the manifest resealed without it), of another shape, or holding NaN: each refused, naming the entry.
        var e = Refused(Edited(saved, es => es.Remove(head)), head);
        StringAssert.Contains(e.Message, "missing");
        var classes = model.LastTransformer.Classes.Count;
        using (var other = new Mblm.Model.PooledClassifierHead(model.LastTransformer.Model.PooledWidth, classes + 1, 0.1))
        {
            var bytes = new MemoryStream();
            Mblm.Weights.SafeTensors.Save(other.state_dict(), bytes);
            e = Refused(Edited(saved, es => es[head] = bytes.ToArray()), head);
            StringAssert.Contains(e.Message, "proj.weight");
        }
        using (var nan = new Mblm.Model.PooledClassifierHead(model.LastTransformer.Model.PooledWidth, classes, 0.1))
        {
            using (TorchSharp.torch.no_grad()) nan.state_dict()["proj.bias"].fill_(double.NaN);
            var bytes = new MemoryStream();
            Mblm.Weights.SafeTensors.Save(nan.state_dict(), bytes);
            e = Refused(Edited(saved, es => es[head] = bytes.ToArray()), head);
            StringAssert.Contains(e.Message, "NaN");
        }
    }
}
