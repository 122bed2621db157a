using Mblm.Pretraining;
using Mblm.Training;

namespace Mblm.Tests;

/// <summary>The pretraining corpus: gathering by kind with caps, deduplication by content, a split by file, and the manifest file.</summary>
[TestClass]
public sealed class CorpusManifestTests
{
    private static string NewTree()
    {
        string root = Path.Combine(Path.GetTempPath(), $"mblm-corpus-{Guid.NewGuid():N}");
        void Write(string rel, string text)
        {
            string p = Path.Combine(root, rel);
            Directory.CreateDirectory(Path.GetDirectoryName(p)!);
            File.WriteAllText(p, text);
        }
        Write("a.txt", "alpha text");
        Write("copy-of-a.txt", "alpha text");                   // same bytes as a.txt
        Write("sub/c.txt", "gamma text, a little longer");
        Write("d1/d2/d3/deep.txt", "too deep");
        Write("big.txt", new string('x', 5000));                 // over MaxFileBytes
        Write("empty.txt", "");
        Write("x.bin", "\u0001\u0002binary");
        Write("y.bin", "alpha text");                            // the text of a.txt under another kind: still a duplicate
        File.CreateSymbolicLink(Path.Combine(root, "link.txt"), Path.Combine(root, "sub", "c.txt"));
        return root;
    }

    private static IReadOnlyList<CorpusKind> Kinds(string root) =>
    [
        new("text", 2.0, [root], p => p.EndsWith(".txt", StringComparison.Ordinal)),
        new("bytes", 0.5, [root], p => p.EndsWith(".bin", StringComparison.Ordinal)),
    ];

    [TestMethod]
    public void Build_TakesKindsInOrder_Deduplicates_AndRespectsTheCaps()
    {
        string root = NewTree();
        try
        {
            var manifest = CorpusManifest.Build(Kinds(root), new CorpusOptions { MaxFileBytes = 1000, MaxDepth = 2, HeldOutPercent = 50 });
            var names = manifest.Files.Select(f => Path.GetRelativePath(root, f.Path)).ToList();
            CollectionAssert.AreEqual(new[] { "a.txt", "sub/c.txt", "x.bin" }, names, string.Join(", ", names));
            Assert.AreEqual(2, manifest.DuplicatesSkipped, "copy-of-a.txt and y.bin repeat a.txt");
            Assert.AreEqual("text", manifest.Files[0].Kind);
            Assert.AreEqual("bytes", manifest.Files[2].Kind);
            Assert.AreEqual(2.0, manifest.Weights["text"]);
            Assert.AreEqual(10L, manifest.Files[0].Size);
            Assert.AreEqual(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData("alpha text"u8.ToArray())), manifest.Files[0].Sha256);
            foreach (var f in manifest.Files) Assert.AreEqual(CorpusManifest.IsHeldOut(Path.GetRelativePath(root, f.Path), 50), f.HeldOut, f.Path);
            StringAssert.Contains(manifest.Summary(), "text: 2 files, 37 bytes");

            // A per-kind byte cap: only what fits is taken.
            var capped = CorpusManifest.Build(Kinds(root), new CorpusOptions { MaxFileBytes = 1000, MaxDepth = 2, MaxBytesPerKind = 20 });
            Assert.AreEqual(1, capped.Files.Count(f => f.Kind == "text"));
            // Deeper folders with a larger depth.
            var deep = CorpusManifest.Build(Kinds(root), new CorpusOptions { MaxFileBytes = 1000, MaxDepth = 3 });
            Assert.IsTrue(deep.Files.Any(f => f.Path.EndsWith("deep.txt", StringComparison.Ordinal)));
        }
        finally { Directory.Delete(root, true); }
    }

    [TestMethod]
    public void HeldOut_IsAStableFunctionOfThePath()
    {
        Assert.AreEqual(CorpusManifest.IsHeldOut("/usr/share/doc/x/copyright", 5), CorpusManifest.IsHeldOut("/usr/share/doc/x/copyright", 5));
        int held = Enumerable.Range(0, 10_000).Count(i => CorpusManifest.IsHeldOut($"/data/file-{i}.txt", 5));
        Assert.IsTrue(held is > 400 and < 600, $"{held} of 10,000 held out at 5 %");
        Assert.AreEqual(0, Enumerable.Range(0, 1000).Count(i => CorpusManifest.IsHeldOut($"/f{i}", 0)));
    }

    [TestMethod]
    public void Manifest_RoundTrips_AndDamageIsRefusedNamingTheFile()
    {
        string root = NewTree();
        string path = Path.Combine(root, "corpus.json");
        try
        {
            var manifest = CorpusManifest.Build(Kinds(root), new CorpusOptions { MaxFileBytes = 1000, MaxDepth = 2 });
            manifest.Save(path);
            var back = CorpusManifest.Load(path);
            CollectionAssert.AreEqual(manifest.Files.ToList(), back.Files.ToList());
            CollectionAssert.AreEquivalent(manifest.Weights.ToList(), back.Weights.ToList());
            Assert.AreEqual(manifest.DuplicatesSkipped, back.DuplicatesSkipped);

            string good = File.ReadAllText(path);
            foreach (var (from, to, what) in new[]
            {
                ("\"kind\": \"text\"", "\"kind\": \"nope\"", "has no weight"),
                ("\"size\": 10", "\"size\": -10", "size must be positive"),
                (manifest.Files[0].Sha256, "zz", "sha256"),
                ("\"format\": 1", "\"format\": 2", "format"),
                ("\"weights\": {", "\"weights\": { \"bad\": -1,", "must be positive"),
            })
            {
                File.WriteAllText(path, good.Replace(from, to));
                var e = Assert.ThrowsExactly<MblmFormatException>(() => CorpusManifest.Load(path), what);
                StringAssert.Contains(e.Message, path);
                StringAssert.Contains(e.Message, what);
            }
            File.WriteAllText(path, "{\"format\": 1, \"weights\": ");
            Assert.ThrowsExactly<MblmFormatException>(() => CorpusManifest.Load(path));
        }
        finally { Directory.Delete(root, true); }
    }

    [TestMethod]
    public void Options_OutOfRange_AreRefusedNamingTheOption()
    {
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => CorpusManifest.Build([], new CorpusOptions { HeldOutPercent = 80 }));
        StringAssert.Contains(e.Message, "CorpusOptions.HeldOutPercent");
        var k = Assert.ThrowsExactly<ArgumentException>(() => CorpusManifest.Build([new CorpusKind("a b", 1, [], _ => true)]));
        StringAssert.Contains(k.Message, "'a b'");
        Assert.ThrowsExactly<ArgumentException>(() => CorpusManifest.Build([new CorpusKind("a", 0, [], _ => true)]));
    }

    [TestMethod]
    public void InstalledKinds_FindTextAndBinaryFilesOnThisSystem()
    {
        // Small caps: this checks that the kinds' places and rules find files here, not the corpus itself.
        var manifest = CorpusManifest.Build(CorpusKind.Installed, new CorpusOptions { MaxBytesPerKind = 64 << 10, MaxFilesScanned = 3000 });
        var kinds = manifest.Files.Select(f => f.Kind).Distinct().ToList();
        Assert.IsTrue(kinds.Contains("c-header") && kinds.Contains("elf") && kinds.Count >= 4, manifest.Summary());
        foreach (var g in manifest.Files.GroupBy(f => f.Kind)) Assert.IsTrue(g.Sum(f => f.Size) <= 64 << 10, g.Key);
    }
}

/// <summary>Training windows drawn from a corpus by kind weight, reproducibly, and held-out bits per byte per kind.</summary>
[TestClass]
public sealed class CorpusSourceTests
{
    private static (string Root, CorpusManifest Manifest) Corpus(int heldOutPercent = 0)
    {
        string root = Path.Combine(Path.GetTempPath(), $"mblm-corpus-src-{Guid.NewGuid():N}");
        Directory.CreateDirectory(root);
        for (int i = 0; i < 4; i++)
        {
            File.WriteAllText(Path.Combine(root, $"a{i}.txt"), new string((char)('a' + i % 2), 300 + i));     // kind "a": letters a/b
            File.WriteAllText(Path.Combine(root, $"d{i}.dat"), string.Concat(Enumerable.Repeat($"{i}", 200 + i))); // kind "d": digits
        }
        File.WriteAllText(Path.Combine(root, "short.dat"), "9");
        var manifest = CorpusManifest.Build(
        [
            new CorpusKind("a", 3.0, [root], p => p.EndsWith(".txt", StringComparison.Ordinal)),
            new CorpusKind("d", 1.0, [root], p => p.EndsWith(".dat", StringComparison.Ordinal)),
        ], new CorpusOptions { HeldOutPercent = heldOutPercent });
        return (root, manifest);
    }

    [TestMethod]
    public void Samples_FollowTheWeights_AreReproducible_AndFitTheWindow()
    {
        var (root, manifest) = Corpus();
        try
        {
            var source = new CorpusSource(manifest, heldOut: false, windowLength: 16, samplesPerEpoch: 4000, seed: 5);
            var samples = Enumerable.Range(0, 4000).Select(i => source.Get(0, i)).ToList();
            double letters = samples.Count(s => s.Ids[0] >= 'a') / 4000.0;
            Assert.AreEqual(0.75, letters, 0.03, "kind a has weight 3 of 4");
            Assert.IsTrue(samples.All(s => s.Ids.Length == 16 && s.LossMask.Length == 16), "every window is full: no padding");
            // Windows run on across file ends in manifest order: a letter window with both a and b, a digit window with two digits.
            Assert.IsTrue(samples.Any(s => s.Ids.Contains('a') && s.Ids.Contains('b')), "a window spans a0.txt and a1.txt");
            Assert.IsTrue(samples.Any(s => s.Ids.Contains('0') && s.Ids.Contains('1')), "a window spans d0.dat and d1.dat");
            // Every window is a substring of the kind's files read one after another.
            string letters0 = string.Concat(manifest.Files.Where(f => f.Kind == "a").Select(f => File.ReadAllText(f.Path)));
            string digits0 = string.Concat(manifest.Files.Where(f => f.Kind == "d").Select(f => File.ReadAllText(f.Path)));
            foreach (var s in samples.Take(300))
            {
                string text = new(s.Ids.Select(b => (char)b).ToArray());
                Assert.IsTrue(letters0.Contains(text, StringComparison.Ordinal) || digits0.Contains(text, StringComparison.Ordinal), text);
            }
            var whole = new CorpusSource(manifest, false, windowLength: 100_000, samplesPerEpoch: 10, seed: 1).Get(0, 0);
            Assert.IsTrue(whole.Ids.Length == letters0.Length || whole.Ids.Length == digits0.Length, "a kind shorter than the window is one whole sample");
            CollectionAssert.AreEqual(samples[7].Ids, new CorpusSource(manifest, false, 16, 4000, seed: 5).Get(0, 7).Ids, "same seed, same sample");
            Assert.IsTrue(Enumerable.Range(0, 50).Any(i => !source.Get(1, i).Ids.SequenceEqual(source.Get(0, i).Ids)), "epochs differ");
        }
        finally { Directory.Delete(root, true); }
    }

    [TestMethod]
    public void GzipFiles_AreDecoded_AndShellScriptsAreFoundByTheirFirstLine()
    {
        string root = Path.Combine(Path.GetTempPath(), $"mblm-corpus-gz-{Guid.NewGuid():N}");
        Directory.CreateDirectory(root);
        try
        {
            string text = string.Concat(Enumerable.Repeat("the manual page text ", 40));
            using (var gz = new System.IO.Compression.GZipStream(File.Create(Path.Combine(root, "page.1.gz")), System.IO.Compression.CompressionLevel.SmallestSize))
                gz.Write(System.Text.Encoding.ASCII.GetBytes(text));
            File.WriteAllText(Path.Combine(root, "bad.2.gz"), "not gzip at all");
            File.WriteAllText(Path.Combine(root, "script"), "#!/bin/sh\necho hi\n");
            File.WriteAllText(Path.Combine(root, "tool"), "#!/usr/bin/python3\nprint()\n");
            var manifest = CorpusManifest.Build(
            [
                new CorpusKind("man", 1, [root], p => p.EndsWith(".gz", StringComparison.Ordinal)) { Encoding = CorpusEncoding.Gzip },
                new CorpusKind("shell", 1, [root], p => !Path.GetFileName(p).Contains('.', StringComparison.Ordinal)) { AcceptContent = c => CorpusKind.IsShellScript(c) },
            ]);
            var man = manifest.Files.Single(f => f.Kind == "man");
            Assert.AreEqual(text.Length, man.Size, "the size is the decoded size; invalid gzip is left out");
            Assert.AreEqual(CorpusEncoding.Gzip, man.Encoding);
            Assert.AreEqual("script", Path.GetFileName(manifest.Files.Single(f => f.Kind == "shell").Path), "the Python script is not a shell script");
            string path = Path.Combine(root, "corpus.json");
            manifest.Save(path);
            var loaded = CorpusManifest.Load(path);
            Assert.AreEqual(CorpusEncoding.Gzip, loaded.Files.Single(f => f.Kind == "man").Encoding, "the encoding survives the manifest");
            var source = new CorpusSource(loaded, heldOut: false, windowLength: 32, samplesPerEpoch: 50, seed: 3);
            var sample = Enumerable.Range(0, 50).Select(i => source.Get(0, i)).First(s => s.Ids[0] != '#' && s.Ids[0] != 'e');
            StringAssert.Contains(text, new string(sample.Ids.Select(b => (char)b).ToArray()), "windows are decoded text");
            // A gzip bomb is bounded: a file decoding past MaxFileBytes is left out.
            var small = CorpusManifest.Build([new CorpusKind("man", 1, [root], p => p.EndsWith(".gz", StringComparison.Ordinal)) { Encoding = CorpusEncoding.Gzip }],
                new CorpusOptions { MaxFileBytes = 100 });
            Assert.AreEqual(0, small.Files.Count);
        }
        finally { Directory.Delete(root, true); }
    }

    [TestMethod]
    public void ChangedFiles_AreRefusedNamingThem()
    {
        var (root, manifest) = Corpus();
        try
        {
            string changed = Path.Combine(root, "a0.txt");
            File.WriteAllText(changed, new string('z', 300));   // same size, other bytes
            var e = Assert.ThrowsExactly<MblmFormatException>(() => new CorpusSource(manifest, false, 16, 10, seed: 1));
            StringAssert.Contains(e.Message, changed);
            StringAssert.Contains(e.Message, "SHA-256");
            File.WriteAllText(changed, "shorter");
            e = Assert.ThrowsExactly<MblmFormatException>(() => new CorpusSource(manifest, false, 16, 10, seed: 1, verify: false));
            StringAssert.Contains(e.Message, "in the corpus manifest");
        }
        finally { Directory.Delete(root, true); }
    }

    [TestMethod]
    public void HeldOutSplit_DependsOnThePathUnderTheRoot_NotOnWhereTheCorpusLies()
    {
        var (root1, first) = Corpus(heldOutPercent: 50);
        var (root2, second) = Corpus(heldOutPercent: 50);
        try
        {
            static string Split(CorpusManifest m) => string.Join(" ", m.Files.Select(f => $"{Path.GetFileName(f.Path)}:{f.HeldOut}"));
            Assert.AreNotEqual(root1, root2);
            Assert.AreEqual(Split(first), Split(second));
            CollectionAssert.AreEqual(new[] { "a1.txt", "d1.dat", "d2.dat" }, first.Files.Where(f => f.HeldOut).Select(f => Path.GetFileName(f.Path)).ToArray());
        }
        finally { Directory.Delete(root1, true); Directory.Delete(root2, true); }
    }

    [TestMethod]
    public void TrainsAModel_AndMeasuresHeldOutBitsPerBytePerKind()
    {
        var (root, manifest) = Corpus(heldOutPercent: 50);
        try
        {
            Assert.IsTrue(manifest.Files.Any(f => f.HeldOut) && manifest.Files.Any(f => !f.HeldOut), manifest.Summary());
            var config = Mblm.Config.MblmPresets.Tiny with { SeqLens = [4, 4] };
            using var model = TestData.RandomModel(config, seed: 1);
            var train = new CorpusSource(manifest, heldOut: false, windowLength: 16, samplesPerEpoch: 64, seed: 2);
            var result = new Trainer(model, new TrainerOptions { Steps = 3, BatchSize = 4, LearningRate = 1e-3, Seed = 1 }).Train(train);
            Assert.AreEqual(3L, result.Steps);
            var heldOut = new CorpusSource(manifest, heldOut: true, windowLength: 16, samplesPerEpoch: 1, seed: 0);
            var bpb = heldOut.BitsPerBytePerKind(model, maxBytesPerKind: 256);
            CollectionAssert.AreEquivalent(heldOut.Kinds.ToList(), bpb.Keys.ToList());
            Assert.IsTrue(bpb.Values.All(v => double.IsFinite(v) && v > 0), string.Join(", ", bpb));
        }
        finally { Directory.Delete(root, true); }
    }
}
