using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Mblm.Config;
using Mblm.Model;
using Mblm.Training;
using Mblm.Weights;
using Microsoft.ML;
using Microsoft.ML.Data;
using Mblm.MLNet.LanguageModel;

namespace Mblm.Fuzz.Core;

/// <summary>How one attempt ended.</summary>
internal enum Outcome
{
    /// <summary>Loaded (and used) fine; the mutation may have been harmless.</summary>
    Ok,
    /// <summary>A documented, typed error (or, for the CLI, exit code 1/2 with a message and no stack trace).</summary>
    Clean,
    /// <summary>Any other exception (or an unclean CLI failure): a bug to fix.</summary>
    Other,
    /// <summary>The process died: signal, stack overflow, out of memory, abnormal exit, or killed above the safety cap.</summary>
    Crash,
    /// <summary>Ran past the timeout and was killed.</summary>
    Hang,
}

/// <summary>The outcome of one attempt (in-process, or one CLI command).</summary>
/// <param name="Note">For an Ok attempt, what the library reported on the way (a resume's warnings: checkpoints it skipped as damaged).</param>
internal sealed record AttemptResult(Outcome Outcome, string? ExceptionType, string? Message, string Mutation, double Seconds, string? Detail = null, string? Note = null);

internal sealed class FuzzTextRow
{
    public string Text { get; set; } = "";
}

/// <summary>
/// The seed files every mutation starts from, made here from a tiny model: its config (JSON and a reference training YAML),
/// its weights, a saved ML.NET pipeline (a copy transform and a language model that generates), a training run's
/// checkpoint folder, training bytes and a forward input. Kept in a folder so that workers and reproductions share them.
/// </summary>
internal sealed class FuzzSeeds
{
    /// <summary>Bump when the seeds change, so that an old seed folder is not reused.</summary>
    public const int Version = 5; // 4: checkpoints store optimizer.safetensors; 5: model.pth

    public string Dir { get; }
    public string ConfigJson => Path.Combine(Dir, "model.json");
    public string ConfigYaml => Path.Combine(Dir, "train.yaml");
    public string Weights => Path.Combine(Dir, "model.safetensors");
    public string Pth => Path.Combine(Dir, "model.pth");
    public string Pipeline => Path.Combine(Dir, "pipeline.zip");
    public string Run => Path.Combine(Dir, "run");
    public string Data => Path.Combine(Dir, "data.bin");
    public string ForwardInput => Path.Combine(Dir, "input.json");

    private FuzzSeeds(string dir) => Dir = dir;

    public static string DefaultDir => Path.Combine(Path.GetTempPath(), $"mblm-fuzz-seeds-v{Version}");

    /// <summary>The tiny model: a global Mamba2 and a local Transformer, 64 bytes of context.</summary>
    public static MblmConfig Config { get; } = new MblmConfig
    {
        NumTokens = 257,
        PadTokenId = 256,
        HiddenDims = [32, 16],
        NumLayers = [1, 1],
        SeqLens = [16, 4],
        Blocks =
        [
            new Mamba2BlockConfig { DState = 8, DConv = 4, Expand = 2, Headdim = 8 },
            new TransformerBlockConfig { AttnHeadDims = 8, AttnNumHeads = 2, AttnUseRotEmbs = true, PosEmbType = PosEmbType.Fixed },
        ],
    }.Validate();

    /// <summary>The config as a reference training file (io, params, train), as the reference's shipped files lay it out.</summary>
    public static YMap YamlTree()
    {
        static YScalar S(string raw) => new(raw);
        static YSeq Flow(params string[] xs) => new(xs.Select(x => (YNode)S(x)).ToList(), flow: true);
        return new YMap(
        [
            ("io", new YMap(
            [
                ("name_model", S("fuzz_tiny_2d_st")), ("output_dir", S("/data/output < set this!")), ("dataset_dir", S("/data/datasets/pg19 < set this!")),
                ("dataset_id", S("pg19")), ("num_models_to_save", S("5")), ("validate_amount", S("100")), ("log_train_loss_amount", S("1000")),
            ])),
            ("params", new YMap(
            [
                ("num_tokens", S("257")), ("pad_token_id", S("256")), ("input_seq_len", S("64")), ("seq_lens", Flow("16", "4")),
                ("hidden_dims", Flow("32", "16")), ("num_layers", Flow("1", "1")), ("train_checkpoint_chunks", S("null")),
                ("block", new YSeq(
                [
                    new YMap([("block_type", S("mamba2")), ("d_state", S("8")), ("d_conv", S("4")), ("expand", S("2")), ("headdim", S("8")), ("pos_emb_type", S("null"))]),
                    new YMap([("attn_head_dims", S("8")), ("attn_num_heads", S("2")), ("attn_use_rot_embs", S("true")), ("attn_dropout", S("0")), ("use_flash_attn", S("true")),
                        ("pos_emb_type", S("fixed"))]),
                ], flow: false)),
            ])),
            ("train", new YMap(
            [
                ("target_elements", S("30_000_000")), ("target_elements_strategy", S("sequence")), ("batch_size", S("6")), ("shuffle_train", S("false")),
                ("learning_rate", S("0.001")), ("gradient_clipping", S("1")), ("gradient_accumulate_every", S("8")),
            ])),
        ]);
    }

    public static readonly string[] Corpus = Enumerable.Range(0, 24).Select(i =>
        $"Row {i}: the quick brown fox jumps over the lazy dog while {i % 7} cats sleep." + (i % 4 == 0 ? " A longer tail that needs more than one window of sixty-four bytes." : "")).ToArray();

    /// <summary>The options of the checkpoint run: 3 steps (part of the run's fingerprint); the seed keeps the checkpoints of steps 1 and 2, a resume takes the third.</summary>
    public static TrainerOptions TrainerOptions(string outputDirectory) => new()
    {
        Steps = 3, BatchSize = 4, LearningRate = 1e-3, CheckpointEvery = 1, OutputDirectory = outputDirectory, Seed = 1,
    };

    /// <summary>The seeds in <paramref name="dir"/>, made there first when missing (atomically: a temporary folder renamed).</summary>
    public static FuzzSeeds Ensure(string dir)
    {
        dir = Path.GetFullPath(dir);
        if (File.Exists(Path.Combine(dir, "complete"))) return new FuzzSeeds(dir);
        string temp = dir + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        Directory.CreateDirectory(temp);
        try
        {
            Create(new FuzzSeeds(temp));
            File.WriteAllText(Path.Combine(temp, "complete"), "");
            try { Directory.Move(temp, dir); }
            catch (IOException) when (File.Exists(Path.Combine(dir, "complete"))) { } // another process made them first
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
        return new FuzzSeeds(dir);
    }

    private static void Create(FuzzSeeds s)
    {
        File.WriteAllText(s.ConfigJson, ConfigWriter.ToJson(Config));
        File.WriteAllText(s.ConfigYaml, YamlWriter.Write(YamlTree()));
        File.WriteAllText(s.ForwardInput, "{\"ids\": [[116, 104, 101, 32, 113, 117, 105, 99, 107, 32, 98, 114]], \"loss_mask\": null}");
        File.WriteAllBytes(s.Data, Encoding.UTF8.GetBytes(string.Concat(Corpus) + string.Concat(Corpus)));
        using (var scope = TorchSharp.torch.NewDisposeScope())
        {
            TorchSharp.torch.manual_seed(0);
            using var model = new MblmModel(Config);
            ModelWeights.Save(model, s.Weights);
            PyTorchCheckpoint.Save(model.state_dict(), s.Pth, loss: 1.25); // the reference trainer's layout
        }

        // The pipeline: an ML.NET transform, then a language model that generates 4 bytes per row.
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Corpus.Select(t => new FuzzTextRow { Text = t }).ToList());
        var pipeline = ml.Transforms.CopyColumns("Prompt", "Text").Append(ml.Mblm().LanguageModel(new MLNet.LanguageModel.MblmLanguageModelTrainer.Options
        {
            ModelConfig = Config, InputColumnName = "Prompt", MaxSteps = 3, BatchSize = 8, LearningRate = 3e-3, MaxNewBytes = 4, ScoringBatchSize = 4,
        }));
        var fitted = pipeline.Fit(data);
        string raw = Path.Combine(s.Dir, "pipeline.raw.zip");
        ml.Mblm().SaveModel(fitted, data.Schema, raw);
        foreach (var t in fitted) (t as IDisposable)?.Dispose();
        // Rewritten with fixed timestamps (inner ML.NET model files too), so the bytes depend on the model only.
        File.WriteAllBytes(s.Pipeline, Repack(File.ReadAllBytes(raw)));
        File.Delete(raw);

        // A training run of 3 steps with a checkpoint after each, as if killed after step 2: its last checkpoint removed.
        TorchSharp.torch.manual_seed(0);
        using (var model = new MblmModel(Config))
        using (var dataset = new ByteFileDataset(s.Data, (int)Config.MaxContext))
            new Trainer(model, TrainerOptions(s.Run)).Train(dataset);
        Directory.Delete(Path.Combine(s.Run, "checkpoints", CheckpointStore.FolderName(3)), recursive: true);
        foreach (var trainerJson in Directory.GetFiles(Path.Combine(s.Run, "checkpoints"), "trainer.json", SearchOption.AllDirectories))
        {
            var doc = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(trainerJson))!.AsObject();
            doc["saved_utc"] = "2020-01-01T00:00:00.0000000Z";
            File.WriteAllText(trainerJson, doc.ToJsonString());
        }
    }

    private static byte[] Repack(byte[] zip)
    {
        var entries = ZipWriter.Read(zip);
        foreach (var e in entries.Where(e => e.Name.EndsWith(".zip", StringComparison.Ordinal)))
            e.Content = FileImage.Of(Repack(e.Content.ToArray()));
        FuzzFormats.MatchChecksums(entries, new MutationLog()); // the manifest's checksums of the re-zipped entries
        return ZipWriter.ToBytes(entries);
    }

    /// <summary>SHA-256 (first 12 hex digits) of each seed file, to compare seed folders between machines.</summary>
    public IEnumerable<string> Digests() =>
        new[] { ConfigJson, ConfigYaml, Weights, Pth, Pipeline, Data }
            .Concat(Directory.GetFiles(Run, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            .Select(f => $"{Path.GetRelativePath(Dir, f)} {Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f)))[..12].ToLowerInvariant()}");
}

/// <summary>What an attempt loads: the mutated file or folder, and how it was made.</summary>
internal sealed record PreparedAttempt(string Format, long Seed, long Index, string Path, string Mutation, string AttemptDir);

/// <summary>The per-process state of a fuzzing run: the seeds, read once, and the model weights are loaded into.</summary>
internal sealed class FuzzContext(FuzzSeeds seeds) : IDisposable
{
    public FuzzSeeds Seeds { get; } = seeds;
    public string ConfigJsonText { get; } = File.ReadAllText(seeds.ConfigJson);
    public byte[] WeightsBytes { get; } = File.ReadAllBytes(seeds.Weights);
    public byte[] PthBytes { get; } = File.ReadAllBytes(seeds.Pth);
    public byte[] PipelineBytes { get; } = File.ReadAllBytes(seeds.Pipeline);
    public YMap Yaml { get; } = FuzzSeeds.YamlTree();

    private MblmModel? _target;

    /// <summary>The model that weights files are loaded into (built once from the seed config).</summary>
    public MblmModel WeightsTarget
    {
        get
        {
            if (_target is null)
            {
                TorchSharp.torch.manual_seed(0);
                _target = new MblmModel(FuzzSeeds.Config);
                _target.eval();
            }
            return _target;
        }
    }

    public void Dispose() => _target?.Dispose();
}

/// <summary>The formats: how each is mutated, loaded in-process, and run through the CLI; and what counts as a clean error.</summary>
internal static class FuzzFormats
{
    public static readonly string[] All = ["safetensors", "config-json", "config-yaml", "pipeline", "checkpoint", "pth"];

    public const string PredictText = "the quick brown fox";

    /// <summary>
    /// The documented error families: <see cref="MblmFormatException"/>, <see cref="ConfigException"/>,
    /// <see cref="WeightsMismatchException"/>, <see cref="ArgumentException"/> and its subclasses, and missing files or
    /// folders. Anything else escaping a loader is a finding.
    /// </summary>
    /// <remarks>
    /// Also <see cref="CheckpointMismatchException"/>: main's typed refusal of a resume from another run's checkpoint (the
    /// fingerprint in a mutated trainer.json differs from this run's settings).
    /// </remarks>
    public static bool IsClean(Exception e) =>
        e is MblmFormatException or ConfigException or WeightsMismatchException or ArgumentException or FileNotFoundException or DirectoryNotFoundException
            or CheckpointMismatchException;

    /// <summary>The command line that reruns one attempt through the harness.</summary>
    public static string Reproduce(string format, long seed, long index, bool cli = false) =>
        $"dotnet run -c Release --project tools/Mblm.Fuzz -- --formats {format} --seed {seed} --from {index} --count 1{(cli ? " --cli" : "")} --keep";

    /// <summary>Makes attempt <paramref name="index"/>'s mutated input under <paramref name="attemptDir"/>.</summary>
    public static PreparedAttempt Prepare(FuzzContext ctx, string format, long seed, long index, string attemptDir)
    {
        Directory.CreateDirectory(attemptDir);
        var rng = FuzzRng.For(seed, format, index);
        var log = new MutationLog();
        string path;
        switch (format)
        {
            case "safetensors":
                path = System.IO.Path.Combine(attemptDir, "model.safetensors");
                SafeTensorsMutator.Mutate(ctx.WeightsBytes, rng, log, "model.safetensors").WriteTo(path);
                break;
            case "config-json":
                path = System.IO.Path.Combine(attemptDir, "model.json");
                File.WriteAllBytes(path, JsonMutator.Mutate(ctx.ConfigJsonText, rng, log, "model.json", ConfigValue));
                break;
            case "config-yaml":
                path = System.IO.Path.Combine(attemptDir, "train.yaml");
                File.WriteAllBytes(path, YamlMutator.Mutate(ctx.Yaml, rng, log, "train.yaml"));
                break;
            case "pipeline":
            {
                path = System.IO.Path.Combine(attemptDir, "pipeline.zip");
                var r = ZipMutator.Mutate(ZipWriter.Read(ctx.PipelineBytes), rng, log, "pipeline.zip", PipelineContent, rng.Chance(0.85) ? 1 : 2);
                if (rng.Chance(0.5)) MatchChecksums(r.Entries, log);
                ZipMutator.WriteTo(r, path, rng, log, "pipeline.zip");
                break;
            }
            case "pth":
            {
                path = System.IO.Path.Combine(attemptDir, "model.pth");
                var entries = ZipWriter.Read(ctx.PthBytes);
                if (rng.Chance(0.5))
                {
                    // Half the attempts damage only the pickle, in an otherwise intact archive: what PickleGuard and the
                    // unpickler see.
                    var pickle = entries.Single(e => e.Name.EndsWith("data.pkl", StringComparison.Ordinal));
                    pickle.Content = PthContent(pickle, rng, log);
                    File.WriteAllBytes(path, ZipWriter.ToBytes(entries));
                    break;
                }
                var r = ZipMutator.Mutate(entries, rng, log, "model.pth", PthContent, rng.Chance(0.85) ? 1 : 2);
                ZipMutator.WriteTo(r, path, rng, log, "model.pth");
                break;
            }
            case "checkpoint":
                path = System.IO.Path.Combine(attemptDir, "run");
                CopyFolder(ctx.Seeds.Run, path);
                MutateCheckpoint(path, rng, log);
                break;
            default:
                throw new ArgumentException($"unknown format '{format}' (formats: {string.Join(", ", All)})");
        }
        return new PreparedAttempt(format, seed, index, path, log.ToString(), attemptDir);
    }

    /// <summary>
    /// Loads (and uses) the prepared input through the library's public API; throws what the loaders throw. Returns what the
    /// library warned about (a resume skips a damaged checkpoint with a warning that quotes the loader's exception).
    /// </summary>
    public static string? RunInProcess(FuzzContext ctx, PreparedAttempt a)
    {
        switch (a.Format)
        {
            case "safetensors":
            {
                var tensors = SafeTensors.Load(a.Path);
                try { ModelWeights.Load(ctx.WeightsTarget, tensors, a.Path); }
                finally { foreach (var t in tensors.Values) t.Dispose(); }
                break;
            }
            case "config-json" or "config-yaml":
            {
                // What `mblm info` reads, then what forward/train do next: build the model (the memory budget's check).
                var file = ConfigReader.LoadFile(a.Path);
                _ = file.Model.CountParametersByPart();
                _ = file.Model.CountParameters();
                using var model = new MblmModel(file.Model);
                break;
            }
            case "pipeline":
                LoadAndPredict(a.Path);
                break;
            case "pth":
                ModelWeights.Load(ctx.WeightsTarget, a.Path); // told apart by content, as --weights does
                break;
            case "checkpoint":
            {
                TorchSharp.torch.manual_seed(0);
                using var model = new MblmModel(FuzzSeeds.Config);
                using var data = new ByteFileDataset(ctx.Seeds.Data, (int)FuzzSeeds.Config.MaxContext);
                var result = new Trainer(model, FuzzSeeds.TrainerOptions(a.Path)).Train(data, resume: true);
                return result.Warnings.Count == 0 ? null : string.Join(" | ", result.Warnings);
            }
        }
        return null;
    }

    /// <summary><c>mlContext.Mblm().LoadModel</c>, then one row through the pipeline, reading every visible column.</summary>
    public static void LoadAndPredict(string path)
    {
        var ml = new MLContext(seed: 1);
        var model = ml.Mblm().LoadModel(path, out var schema);
        try
        {
            string column = schema.FirstOrDefault(c => !c.IsHidden && c.Type is TextDataViewType).Name ?? "Text";
            var definition = SchemaDefinition.Create(typeof(FuzzTextRow));
            definition["Text"].ColumnName = column;
            var data = ml.Data.LoadFromEnumerable(new[] { new FuzzTextRow { Text = PredictText } }, definition);
            var output = model.Transform(data);
            var columns = output.Schema.Where(c => !c.IsHidden).ToList();
            using var cursor = output.GetRowCursor(columns);
            var getters = columns.Select(c => Getter(cursor, c)).Where(g => g is not null).ToList();
            while (cursor.MoveNext()) foreach (var g in getters) g!();
        }
        finally
        {
            (model as IDisposable)?.Dispose();
        }
    }

    private static Action? Getter(DataViewRow row, DataViewSchema.Column c)
    {
        if (c.Type is TextDataViewType) { var g = row.GetGetter<ReadOnlyMemory<char>>(c); ReadOnlyMemory<char> v = default; return () => g(ref v); }
        if (c.Type == NumberDataViewType.Single) { var g = row.GetGetter<float>(c); float v = 0; return () => g(ref v); }
        if (c.Type == NumberDataViewType.Double) { var g = row.GetGetter<double>(c); double v = 0; return () => g(ref v); }
        if (c.Type == BooleanDataViewType.Instance) { var g = row.GetGetter<bool>(c); bool v = false; return () => g(ref v); }
        if (c.Type is VectorDataViewType { ItemType: var item } && item == NumberDataViewType.Single) { var g = row.GetGetter<VBuffer<float>>(c); VBuffer<float> v = default; return () => g(ref v); }
        if (c.Type is VectorDataViewType { ItemType: var item2 } && item2 == NumberDataViewType.Byte) { var g = row.GetGetter<VBuffer<byte>>(c); VBuffer<byte> v = default; return () => g(ref v); }
        return null;
    }

    /// <summary>The CLI commands that read this format's mutated input (arguments after <c>mblm</c>).</summary>
    public static List<(string Name, string[] Args)> CliCommands(FuzzContext ctx, PreparedAttempt a) => a.Format switch
    {
        "safetensors" or "pth" => [("forward", ["forward", "--config", ctx.Seeds.ConfigJson, "--weights", a.Path, "--input", ctx.Seeds.ForwardInput, "--device", "cpu"])],
        "config-json" or "config-yaml" =>
        [
            ("info", ["info", "--config", a.Path]),
            ("forward", ["forward", "--config", a.Path, "--weights", ctx.Seeds.Weights, "--input", ctx.Seeds.ForwardInput, "--device", "cpu"]),
        ],
        "pipeline" => [("predict", ["predict", "--model", a.Path, "--text", PredictText])],
        "checkpoint" => [("train --resume", ["train", "--config", ctx.Seeds.ConfigJson, "--data", ctx.Seeds.Data, "--out", a.Path, "--steps", "3",
            "--batch", "4", "--lr", "0.001", "--checkpoint-every", "1", "--seed", "1", "--resume", "--device", "cpu"])],
        _ => [],
    };

    /// <summary>Runs one attempt in this process and classifies it (no watchdog: callers add one).</summary>
    public static AttemptResult Attempt(FuzzContext ctx, PreparedAttempt a)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            string? note = RunInProcess(ctx, a);
            return new AttemptResult(Outcome.Ok, null, null, a.Mutation, clock.Elapsed.TotalSeconds, Note: note);
        }
        catch (Exception e)
        {
            return new AttemptResult(IsClean(e) ? Outcome.Clean : Outcome.Other, e.GetType().FullName, e.Message, a.Mutation, clock.Elapsed.TotalSeconds, e.ToString());
        }
    }

    // ---- format-specific values and content mutations ----

    // Model config values: boundary numbers, and YAML that only a YAML reader accepts (the reader parses JSON as YAML).
    private static string? ConfigValue(FuzzRng rng, string path)
    {
        if (rng.Chance(0.75)) return null;
        return rng.Pick(new[]
        {
            "&a 257", "*a", "*undefined", "!!int 257", "!!str 257", ".inf", ".nan", "0x101", "1_0", "'257'", "~", "!!binary AAAA",
            YamlMutator.FlowBomb(8, 10), "[&x [1, 1], [*x, *x]]", "{? [1]: 2}", "!!python/object/apply:os.system [\"true\"]", "1e400",
            "\"transformer\"", "\"mamba2\"", "\"mamba1\"", "\"transformerEncoder\"", "\"lstm\"", "\"rope\"", "\"fixed\"",
        });
    }

    private static string? ManifestValue(FuzzRng rng, string path)
    {
        if (rng.Chance(0.4)) return null;
        if (path.EndsWith("/format", StringComparison.Ordinal)) return JsonSerializer.Serialize(rng.Pick(new[] { "mblm-mlnet-pipeline ", "MBLM-MLNET-PIPELINE", "", "mblm-mlnet-pipeline\u0000" }));
        if (path.EndsWith("/kind", StringComparison.Ordinal)) return JsonSerializer.Serialize(rng.Pick(new[] { "mlnet", "language-model", "answer-classifier", "Language-Model", "", "../mlnet" }));
        if (path.EndsWith("/folder", StringComparison.Ordinal))
            return JsonSerializer.Serialize(rng.Pick(new[] { "../", "/", "", "stages/000", "stages/000/../../", "stages/999/", "stages/001/", "stages/000/", "/etc/", "C:\\",
                "stages\\000\\", new string('x', 100_000) }));
        if (path.EndsWith("/stages", StringComparison.Ordinal))
            return rng.Pick(new[] { "[]", "null", "[null]", "{}", "[" + string.Join(",", Enumerable.Repeat("{\"kind\": \"mlnet\", \"folder\": \"stages/000/\"}", 10_000)) + "]" });
        return null;
    }

    private static string? StageValue(FuzzRng rng, string path)
    {
        bool probe = path.EndsWith("!probe", StringComparison.Ordinal); // asks whether this hook knows the key
        if (probe) path = path[..^"!probe".Length];
        else if (rng.Chance(0.3)) return null;
        string key = path[(path.LastIndexOf('/') + 1)..];
        string[]? choices = key switch
        {
            "maxNewBytes" or "scoringBatchSize" or "batchSize" or "maxEpochs" or "maxSteps" or "steps" or "seed" or "trainingBytes" or "maxNewTokens" or "topK" =>
                ["0", "-1", "2147483647", "1000000000", "100000", "4096", "1e9", "null", "9223372036854775807", "2.5"],
            "learningRate" or "warmupFraction" or "gradientClipping" or "finalLoss" or "temperature" or "topP" or "validationBitsPerByte" =>
                ["\"NaN\"", "\"Infinity\"", "\"-Infinity\"", "-1", "0", "1e308", "null", "1", "1e-300"],
            "sampling" => ["null", "{}", "{\"temperature\": -1}", "{\"maxNewTokens\": 2147483647}", "{\"topK\": -5}", "{\"stopSequences\": [\"\"]}"],
            "stopSequences" => ["[\"\"]", "[\"a\"]", "null", "[null]", "[" + string.Join(",", Enumerable.Repeat("\"xy\"", 100_000)) + "]", "[\"" + new string('s', 1 << 20) + "\"]"],
            "overflow" => ["\"Stop\"", "\"SlidingWindow\"", "\"Bogus\"", "5", "-1", "null"],
            "inputColumnName" or "bitsPerByteColumnName" or "featuresColumnName" or "completionColumnName" =>
                ["\"Text\"", "\"\"", "\"Missing\"", "null", "\"Prompt\"", "\"Features\"", "\"BitsPerByte\""],
            "training" => ["null", "{}", "[]", "1"],
            _ => null,
        };
        return choices is null ? null : probe ? "" : rng.Pick(choices);
    }

    // A torch.save zip's entries: data.pkl (the pickle PickleGuard walks) and data/N (raw storages), damaged byte-wise.
    private static FileImage PthContent(ZipEntrySpec e, FuzzRng rng, MutationLog log) =>
        e.Content.HasLargeRuns ? e.Content : FileImage.Of(ByteMutator.Mutate(e.Content.ToArray(), rng, log, $"model.pth:{e.Name}"));

    // The most an entry of a mutated zip may inflate to: the largest zip bomb's (3.75 GiB).
    private const long MaxInflatedEntryBytes = 15L << 28;

    private static FileImage PipelineContent(ZipEntrySpec e, FuzzRng rng, MutationLog log)
    {
        if (e.Content.HasLargeRuns) { log.Add($"pipeline.zip: '{e.Name}' left as is (already inflated)"); return e.Content; }
        var bytes = e.Content.ToArray();
        string what = $"pipeline.zip:{e.Name}";
        try
        {
            if (e.Name == "mblm-pipeline.json")
                return FileImage.Of(JsonMutator.Mutate(Encoding.UTF8.GetString(bytes), rng, log, what, ManifestValue, p => p.StartsWith("/stages", StringComparison.Ordinal) || p == "/version"));
            if (e.Name.EndsWith("stage.json", StringComparison.Ordinal))
                return FileImage.Of(JsonMutator.Mutate(Encoding.UTF8.GetString(bytes), rng, log, what, StageValue, p => StageValue(new FuzzRng(0), p + "!probe") is not null));
            if (e.Name.EndsWith("model.json", StringComparison.Ordinal)) return FileImage.Of(JsonMutator.Mutate(Encoding.UTF8.GetString(bytes), rng, log, what, ConfigValue));
            if (e.Name.EndsWith(".safetensors", StringComparison.Ordinal)) return SafeTensorsMutator.Mutate(bytes, rng, log, what, MaxInflatedEntryBytes);
            if (e.Name.EndsWith(".zip", StringComparison.Ordinal)) return ZipMutator.MutateInner(bytes, rng, log, what);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or ArgumentException or FormatException or IndexOutOfRangeException)
        {
            // An entry an earlier mutation already damaged: damage it further byte-wise.
        }
        return FileImage.Of(ByteMutator.Mutate(bytes, rng, log, what));
    }

    /// <summary>
    /// Makes the manifest's SHA-256 of every entry match the (mutated) entries, as a hostile file would, so that a damaged
    /// entry reaches its reader rather than the checksum test. Leaves manifests that do not parse (or lack checksums) alone.
    /// </summary>
    internal static void MatchChecksums(List<ZipEntrySpec> entries, MutationLog log)
    {
        var manifest = entries.FirstOrDefault(e => e.Name == "mblm-pipeline.json");
        if (manifest is null || manifest.Content.HasLargeRuns) return;
        try
        {
            if (System.Text.Json.Nodes.JsonNode.Parse(manifest.Content.ToArray()) is not System.Text.Json.Nodes.JsonObject m || m["sha256"] is not System.Text.Json.Nodes.JsonObject sums) return;
            int changed = 0;
            foreach (var e in entries.Where(e => e != manifest).GroupBy(e => e.Name).Select(g => g.First()))
            {
                if (!sums.ContainsKey(e.Name)) continue;
                string hash = Sha256(e.Content);
                if (sums[e.Name]?.GetValue<string>() == hash) continue;
                sums[e.Name] = hash;
                changed++;
            }
            if (changed == 0) return;
            manifest.Content = FileImage.Of(Encoding.UTF8.GetBytes(m.ToJsonString()));
            log.Add($"pipeline.zip: manifest SHA-256 of {changed} entr{(changed == 1 ? "y" : "ies")} updated to match");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException or FormatException) { }
    }

    private static string Sha256(FileImage image)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var chunk = new byte[1 << 20];
        foreach (var p in image.Pieces)
        {
            if (p.Bytes is not null) { sha.AppendData(p.Bytes); continue; }
            Array.Fill(chunk, p.RunByte);
            for (long left = p.RunLength; left > 0; left -= chunk.Length) sha.AppendData(chunk, 0, (int)Math.Min(left, chunk.Length));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    private static string? TrainerValue(FuzzRng rng, string path)
    {
        if (rng.Chance(0.3)) return null;
        return rng.Chance(0.8) ? Interesting.Number(rng) : rng.Pick(new[] { "\"2\"", "null", "true", "[]", "2.5" });
    }

    private static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var dir in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(System.IO.Path.Combine(to, System.IO.Path.GetRelativePath(from, dir)));
        foreach (var file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(file, System.IO.Path.Combine(to, System.IO.Path.GetRelativePath(from, file)));
    }

    private static readonly string[] CheckpointFiles = ["trainer.json", "weights.safetensors", "optimizer.safetensors", "rng.bin"];

    /// <summary>
    /// Damages a copy of the seed's training run: a file of the newest checkpoint (the one a resume reads) mutated by its
    /// format, removed, replaced by a folder or a link to a device, a newer (damaged) checkpoint added or the folder
    /// renamed; sometimes a file a resume does not read (an older checkpoint, the final weights), which must stay harmless.
    /// </summary>
    private static void MutateCheckpoint(string run, FuzzRng rng, MutationLog log)
    {
        string root = System.IO.Path.Combine(run, "checkpoints");
        string newest = Directory.GetDirectories(root, "step-*").Order(StringComparer.Ordinal).Last();
        string Rel(string p) => System.IO.Path.GetRelativePath(run, p);
        void MutateFile(string file)
        {
            string what = Rel(file);
            switch (System.IO.Path.GetFileName(file))
            {
                case "trainer.json":
                    File.WriteAllBytes(file, JsonMutator.Mutate(File.ReadAllText(file), rng, log, what, TrainerValue,
                        p => !p.StartsWith("/fingerprint", StringComparison.Ordinal)));
                    return;
                case "weights.safetensors" or "optimizer.safetensors":
                    SafeTensorsMutator.Mutate(File.ReadAllBytes(file), rng, log, what).WriteTo(file);
                    break;
                default:
                {
                    var bytes = File.ReadAllBytes(file);
                    switch (rng.Int(4))
                    {
                        case 0:
                            int n = rng.Int(bytes.Length);
                            File.WriteAllBytes(file, bytes[..n]);
                            log.Add($"{what}: truncated to {n} of {bytes.Length} bytes");
                            break;
                        case 1:
                            int extra = rng.Pick(new[] { 1, 8, 64 << 20 });
                            using (var fs = new FileStream(file, FileMode.Append)) fs.SetLength(bytes.Length + (long)extra);
                            log.Add($"{what}: {extra} zero bytes appended");
                            break;
                        default:
                            File.WriteAllBytes(file, ByteMutator.Mutate(bytes, rng, log, what));
                            break;
                    }
                    break;
                }
            }
            // Half the time the damage is made consistent: trainer.json records the new size and SHA-256, as a hostile
            // checkpoint would, so that the file's own reader is reached rather than the integrity check.
            string record = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(file)!, "trainer.json");
            if (File.Exists(record) && new FileInfo(file).Length < (256L << 20) && rng.Chance(0.5)
                && System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(record)) is System.Text.Json.Nodes.JsonObject meta
                && meta["files"] is System.Text.Json.Nodes.JsonObject files)
            {
                var data = File.ReadAllBytes(file);
                files[System.IO.Path.GetFileName(file)] = new System.Text.Json.Nodes.JsonObject
                {
                    ["bytes"] = data.LongLength, ["sha256"] = Convert.ToHexStringLower(SHA256.HashData(data)),
                };
                File.WriteAllText(record, meta.ToJsonString());
                log.Add($"{Rel(record)}: size and SHA-256 of {System.IO.Path.GetFileName(file)} updated to match");
            }
        }

        switch (rng.Weighted(60, 8, 5, 6, 8, 5, 4, 4))
        {
            case 0:
                MutateFile(System.IO.Path.Combine(newest, rng.Pick(CheckpointFiles)));
                break;
            case 1:
            {
                string f = System.IO.Path.Combine(newest, rng.Pick(CheckpointFiles));
                File.Delete(f);
                log.Add($"{Rel(f)} removed");
                break;
            }
            case 2:
            {
                string f = System.IO.Path.Combine(newest, rng.Pick(CheckpointFiles));
                File.Delete(f);
                Directory.CreateDirectory(f);
                log.Add($"{Rel(f)} replaced by a folder");
                break;
            }
            case 3:
            {
                string f = System.IO.Path.Combine(newest, rng.Pick(CheckpointFiles));
                string target = rng.Pick(new[] { "/dev/zero", "/dev/urandom", "/nonexistent/file", newest });
                File.Delete(f);
                File.CreateSymbolicLink(f, target);
                log.Add($"{Rel(f)} replaced by a link to {target}");
                break;
            }
            case 4:
            {
                string name = rng.Pick(new[] { "step-00000009", "step-99999999", "step-x", "step-" + new string('9', 40), "step-00000002 " });
                string added = System.IO.Path.Combine(root, name);
                CopyFolder(newest, added);
                log.Add($"checkpoints/{name} added (a copy of the newest)");
                if (rng.Chance(0.3))
                {
                    foreach (var f in CheckpointFiles.Where(f => f != "trainer.json")) File.Delete(System.IO.Path.Combine(added, f));
                    log.Add($"checkpoints/{name} holds trainer.json only");
                }
                else MutateFile(System.IO.Path.Combine(added, rng.Pick(CheckpointFiles)));
                break;
            }
            case 5:
            {
                string name = rng.Pick(new[] { "step-99999999", "step-" + new string('9', 40), "step-zz", "step--1" });
                Directory.Move(newest, System.IO.Path.Combine(root, name));
                log.Add($"{Rel(newest)} renamed checkpoints/{name}");
                break;
            }
            case 6:
            {
                string older = Directory.GetDirectories(root, "step-*").Order(StringComparer.Ordinal).First();
                MutateFile(System.IO.Path.Combine(older, rng.Pick(CheckpointFiles)));
                log.Add("(an older checkpoint: a resume does not read it)");
                break;
            }
            default:
                MutateFile(System.IO.Path.Combine(run, "weights.safetensors"));
                log.Add("(the final weights: a resume does not read them)");
                break;
        }
    }
}
