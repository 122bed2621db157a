using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mblm.Model;
using Mblm.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Mblm.Training;

/// <summary>
/// Checkpoints under <c>DIR/checkpoints/step-NNNNNNNN/</c>: <c>weights.safetensors</c>, <c>optimizer.safetensors</c>,
/// <c>rng.bin</c> (CPU generator state) and <c>trainer.json</c> (step, data position, the run's fingerprint, and the size
/// and SHA-256 of the other three files, and with a validation set the early-stopping record: <c>validation</c> holds
/// <c>best_step</c>, <c>best_value</c>, <c>since_best</c>, <c>last_value</c> and <c>stopped_early</c>; written last). Each is assembled in a temporary folder (<c>.tmp-step-…</c>) and
/// moved into place, so a crash never leaves a half-written checkpoint under a final name; leftovers of a killed run are
/// removed by <see cref="RemoveTemporaryFiles"/> at the start of the next one.
/// </summary>
public static class CheckpointStore
{
    private const string TrainerFile = "trainer.json", WeightsFile = "weights.safetensors", OptimizerFile = "optimizer.safetensors", RngFile = "rng.bin";
    private static readonly string[] DataFiles = [WeightsFile, OptimizerFile, RngFile];
    /// <summary>The head's weights (a <see cref="TrainingObjective.Head"/>), beside the model's in a checkpoint and in the output directory.</summary>
    internal const string HeadFile = "head.safetensors";

    private static string[] FilesOf(nn.Module? head) => head is null ? DataFiles : [.. DataFiles, HeadFile];

    /// <summary>Name of the checkpoint folder of <paramref name="step"/>.</summary>
    public static string FolderName(long step) => string.Create(CultureInfo.InvariantCulture, $"step-{step:D8}");

    /// <summary>The step a checkpoint folder's name stands for (<c>step-</c> then decimal digits), or null for any other name.</summary>
    public static long? StepOf(string folder)
    {
        string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(folder));
        if (!name.StartsWith("step-", StringComparison.Ordinal)) return null;
        return long.TryParse(name.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out long step) ? step : null;
    }

    /// <summary>
    /// The checkpoint folders under <paramref name="outputDirectory"/> that have a <c>trainer.json</c>, newest (highest step,
    /// compared as numbers) first; folders whose names do not parse as <c>step-N</c> are ignored.
    /// </summary>
    public static IReadOnlyList<string> Complete(string outputDirectory)
    {
        string root = Path.Combine(outputDirectory, "checkpoints");
        if (!Directory.Exists(root)) return [];
        return Directory.GetDirectories(root, "step-*")
            .Select(d => (Folder: d, Step: StepOf(d)))
            .Where(x => x.Step is not null && File.Exists(Path.Combine(x.Folder, TrainerFile)))
            .OrderByDescending(x => x.Step).ThenByDescending(x => Path.GetFileName(x.Folder), StringComparer.Ordinal)
            .Select(x => x.Folder).ToList();
    }

    /// <summary>The newest complete checkpoint folder under <paramref name="outputDirectory"/> (see <see cref="Complete"/>), or null.</summary>
    public static string? Newest(string outputDirectory) => Complete(outputDirectory).FirstOrDefault();

    /// <summary>
    /// Deletes what a killed run leaves behind: <c>checkpoints/.tmp-step-*</c> folders and <c>weights.safetensors.tmp-*</c>
    /// files. Returns the paths removed. Not safe while another run writes into the same directory.
    /// </summary>
    public static IReadOnlyList<string> RemoveTemporaryFiles(string outputDirectory)
    {
        var removed = new List<string>();
        if (!Directory.Exists(outputDirectory)) return removed;
        string root = Path.Combine(outputDirectory, "checkpoints");
        if (Directory.Exists(root))
            foreach (string d in Directory.GetDirectories(root, ".tmp-step-*"))
            {
                Directory.Delete(d, recursive: true);
                removed.Add(d);
            }
        foreach (string f in Directory.GetFiles(outputDirectory, WeightsFile + ".tmp-*"))
        {
            File.Delete(f);
            removed.Add(f);
        }
        return removed;
    }

    internal static void Save(string outputDirectory, long step, DataPosition position, MblmModel model, nn.Module? head, optim.Optimizer optimizer, JsonObject fingerprint,
        ValidationRecord? validation = null)
    {
        string root = Path.Combine(outputDirectory, "checkpoints");
        string final = Path.Combine(root, FolderName(step));
        string temp = Path.Combine(root, $".tmp-{FolderName(step)}-{Guid.NewGuid():N}");
        string? old = null;
        Directory.CreateDirectory(temp);
        try
        {
            ModelWeights.Save(model, Path.Combine(temp, WeightsFile));
            if (head is not null) ModelWeights.Save(head, Path.Combine(temp, HeadFile));
            OptimizerStateFile.Save(optimizer, Path.Combine(temp, OptimizerFile));
            using (var rng = get_rng_state()) File.WriteAllBytes(Path.Combine(temp, RngFile), rng.data<byte>().ToArray());
            var files = new JsonObject();
            foreach (string f in FilesOf(head)) files[f] = Describe(Path.Combine(temp, f));
            var meta = new JsonObject
            {
                ["format"] = 2,
                ["step"] = step, ["epoch"] = position.Epoch, ["index_in_epoch"] = position.Index,
                ["saved_utc"] = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture),
                ["fingerprint"] = fingerprint.DeepClone(),
                ["files"] = files,
            };
            if (validation is { } v) meta["validation"] = v.ToJson();
            File.WriteAllText(Path.Combine(temp, TrainerFile), meta.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            if (Directory.Exists(final))
            {
                // Out of the way first (one rename); a crash from here on leaves a .tmp- folder the next run removes.
                old = Path.Combine(root, $".tmp-{FolderName(step)}-old-{Guid.NewGuid():N}");
                Directory.Move(final, old);
            }
            Directory.Move(temp, final);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            if (old is not null && Directory.Exists(old)) Directory.Delete(old, recursive: true);
        }
    }

    /// <summary>
    /// Loads a checkpoint into the model, optimiser and CPU generator. Everything is checked before the model's weights or
    /// the generator change: the folder name against <c>trainer.json</c>, the run fingerprint (a mismatch throws
    /// <see cref="CheckpointMismatchException"/>), each file's size and SHA-256, and the weights' names and shapes. Damage throws
    /// <see cref="MblmFormatException"/> (or the reader's own exception); the optimiser may then hold partial state.
    /// </summary>
    internal static (long Step, DataPosition Position, ValidationRecord? Validation) Load(string folder, MblmModel model, nn.Module? head, optim.Optimizer optimizer,
        IReadOnlyList<Parameter> parameters, JsonObject fingerprint, ICollection<string> notes)
    {
        var (meta, step, trainerPath) = ReadMeta(folder, fingerprint, notes);
        long index = Integer(meta, "index_in_epoch", trainerPath), epoch = Integer(meta, "epoch", trainerPath);
        if (epoch is < 0 or > int.MaxValue || index < 0) throw new MblmFormatException(trainerPath, null, "step, epoch and index_in_epoch must be non-negative");
        var validation = ValidationRecord.Read(meta["validation"], step, trainerPath);
        if (meta["files"] is JsonObject files)
            foreach (string f in FilesOf(head)) Verify(Path.Combine(folder, f), files[f], trainerPath);

        string weightsPath = Path.Combine(folder, WeightsFile);
        var tensors = SafeTensors.Load(weightsPath);
        Dictionary<string, Tensor>? headTensors = null;
        try
        {
            byte[] rngBytes = ReadBounded(Path.Combine(folder, RngFile), 1 << 20);
            using (var current = get_rng_state())
                if (rngBytes.Length != current.NumberOfElements)
                    throw new MblmFormatException(Path.Combine(folder, RngFile), null, $"holds {rngBytes.Length} bytes, a generator state has {current.NumberOfElements}");
            if (GeneratorStateProblem(rngBytes) is { } rngProblem) throw new MblmFormatException(Path.Combine(folder, RngFile), null, rngProblem);
            string optimizerPath = Path.Combine(folder, OptimizerFile);
            if (!File.Exists(optimizerPath) && File.Exists(Path.Combine(folder, "optimizer.bin")))
                throw new MblmFormatException(folder, "optimizer.bin",
                    "holds optimiser state in TorchSharp's unchecked binary format (checkpoints of an older version): it is not read; train afresh or from the weights (--init)");
            RequireWrittenByTheTrainer(tensors, model, weightsPath);
            if (head is not null)
            {
                headTensors = SafeTensors.Load(Path.Combine(folder, HeadFile));
                RequireWrittenByTheTrainer(headTensors, head, Path.Combine(folder, HeadFile));
                // Names and shapes of the head too, before the optimiser or the model change.
                ModelWeights.Check(head, headTensors, Path.Combine(folder, HeadFile));
            }
            OptimizerStateFile.Load(optimizer, parameters, optimizerPath);
            ModelWeights.Load(model, tensors, weightsPath); // checks every name and shape before copying anything
            if (head is not null) ModelWeights.Load(head, headTensors!, Path.Combine(folder, HeadFile));
            using var rng = tensor(rngBytes);
            set_rng_state(rng);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
            if (headTensors is not null) foreach (var t in headTensors.Values) t.Dispose();
        }
        return (step, new DataPosition((int)epoch, index), validation);
    }

    // trainer.json read and checked: bounded size, UTF-8, depth, the step against the folder's name, the run fingerprint.
    private static (JsonObject Meta, long Step, string Path) ReadMeta(string folder, JsonObject fingerprint, ICollection<string> notes)
    {
        string trainerPath = Path.Combine(folder, TrainerFile);
        JsonObject meta;
        try
        {
            byte[] trainerBytes = ReadBounded(trainerPath, 1 << 20);
            if (!System.Text.Unicode.Utf8.IsValid(trainerBytes)) throw new JsonException("not valid UTF-8 text");
            meta = JsonNode.Parse(trainerBytes, documentOptions: new JsonDocumentOptions { MaxDepth = Limits.MaxNestingDepth }) as JsonObject
                   ?? throw new JsonException("not a JSON object");
        }
        catch (JsonException e) { throw new MblmFormatException(trainerPath, null, $"not a valid trainer state: {e.Message}", e); }
        long step = Integer(meta, "step", trainerPath);
        if (step < 0) throw new MblmFormatException(trainerPath, null, "step, epoch and index_in_epoch must be non-negative");
        if (StepOf(folder) != step) throw new MblmFormatException(trainerPath, "step", $"says step {step}, the folder name says {StepOf(folder)}");
        if (meta["fingerprint"] is JsonObject saved)
        {
            var differences = RunFingerprint.Differences(saved, fingerprint, step);
            if (differences.Count > 0) throw new CheckpointMismatchException(folder, differences);
        }
        else notes.Add($"checkpoint '{folder}' has no run fingerprint (written by an older version): it is not checked against this run's settings");
        return (meta, step, trainerPath);
    }

    /// <summary>
    /// The parts of a weight state (the best weights the trainer keeps, and <see cref="LoadWeights"/>'s result): the model's
    /// tensors under <c>model.</c>, then the head's under <c>head.</c> when there is one.
    /// </summary>
    internal static IEnumerable<(string Prefix, nn.Module Module)> StateParts(nn.Module model, nn.Module? head)
    {
        yield return ("model.", model);
        if (head is not null) yield return ("head.", head);
    }

    /// <summary>
    /// The model's (<c>model.</c>…) and the head's (<c>head.</c>…) weights of a checkpoint, checked as <see cref="Load"/>
    /// checks them (fingerprint, sizes and SHA-256, dtypes, finiteness, names and shapes) but loaded into nothing: the
    /// caller owns the tensors. What the trainer restores as the best validation's weights after a resume.
    /// </summary>
    internal static Dictionary<string, Tensor> LoadWeights(string folder, MblmModel model, nn.Module? head, JsonObject fingerprint)
    {
        var (meta, _, trainerPath) = ReadMeta(folder, fingerprint, new List<string>());
        if (meta["files"] is not JsonObject files) throw new MblmFormatException(trainerPath, "files", "is missing: the weights cannot be checked");
        var result = new Dictionary<string, Tensor>();
        try
        {
            foreach (var (prefix, module) in StateParts(model, head))
            {
                string file = ReferenceEquals(module, model) ? WeightsFile : HeadFile;
                string path = Path.Combine(folder, file);
                Verify(path, files[file], trainerPath);
                var tensors = SafeTensors.Load(path);
                try
                {
                    RequireWrittenByTheTrainer(tensors, module, path);
                    ModelWeights.Check(module, tensors, path);
                }
                catch
                {
                    foreach (var t in tensors.Values) t.Dispose();
                    throw;
                }
                foreach (var (name, value) in tensors)
                {
                    var moved = value.to(model.Device);
                    if (!ReferenceEquals(moved, value)) value.Dispose();
                    result[prefix + name] = moved.DetachFromDisposeScope();
                }
            }
            return result;
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
    }

    /// <summary>
    /// What libtorch would refuse in a CPU generator state (<c>CPUGeneratorImplState</c>: the initial seed (8 bytes), then
    /// the mt19937 engine's <c>left</c> (int32), <c>seeded</c> (int32) and <c>next</c> (uint64) before its 624 words), or null.
    /// libtorch's refusal is a C++ exception that TorchSharp does not catch: the process aborts (fuzz seed 20261204,
    /// checkpoint #1935: bytes of rng.bin swapped behind an updated hash). Checked here before <c>set_rng_state</c>.
    /// </summary>
    internal static string? GeneratorStateProblem(ReadOnlySpan<byte> state)
    {
        const int MersenneWords = 624;
        if (state.Length < 24) return $"holds {state.Length} bytes: too short for a generator state";
        int left = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(state[8..]);
        int seeded = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(state[12..]);
        ulong next = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(state[16..]);
        if (seeded == 0 || left is <= 0 or > MersenneWords || next > MersenneWords)
            return $"is not a valid mt19937 generator state (left {left}, seeded {seeded}, next {next}; expected left in [1, {MersenneWords}], seeded, next ≤ {MersenneWords})";
        return null;
    }

    // The trainer writes each weight in the model's own dtype, and only finite values (non-finite losses are skipped, never
    // stepped on). A tensor of another dtype, or one holding NaN or ±Inf, is damage (its hashes may have been updated to
    // match): refused here, so the resume takes the previous checkpoint instead of training on into non-finite losses.
    private static void RequireWrittenByTheTrainer(IReadOnlyDictionary<string, Tensor> tensors, nn.Module model, string path)
    {
        var state = model.state_dict();
        foreach (var (name, value) in tensors)
        {
            if (state.TryGetValue(name, out var target) && value.dtype != target.dtype)
                throw new MblmFormatException(path, name, $"is stored as {value.dtype}; the trainer writes the model's {target.dtype}");
            RequireFinite(value, path, name);
        }
    }

    /// <summary>
    /// Largest magnitude a checkpoint's weight may hold. Training that produced finite losses stays far
    /// below it; at 1e18 a square already nears float32's range (3.4e38 over a sum of a few hundred), so norms and attention
    /// of such weights overflow and every loss after the resume is non-finite (fuzz seed 20261204, checkpoint #1115: a
    /// tensor filled with 3e38 behind an updated hash).
    /// </summary>
    internal const double MaxMagnitude = 1e18;

    /// <summary>
    /// Throws <see cref="MblmFormatException"/> naming the tensor when a floating-point tensor holds NaN, ±Inf or (when
    /// <paramref name="bounded"/>: weights, not optimiser moments, whose squared gradients may be large) a value beyond
    /// <see cref="MaxMagnitude"/>.
    /// </summary>
    internal static void RequireFinite(Tensor value, string path, string name, bool bounded = true)
    {
        if (!value.is_floating_point() || value.NumberOfElements == 0) return;
        using var finite = isfinite(value).all();
        if (!finite.item<bool>()) throw new MblmFormatException(path, name, "holds NaN or infinite values: a checkpoint the trainer wrote holds only finite ones");
        if (!bounded) return;
        using var high = value.max();
        using var low = value.min();
        double max = Math.Max(high.to_type(ScalarType.Float64).item<double>(), -low.to_type(ScalarType.Float64).item<double>());
        if (max > MaxMagnitude)
            throw new MblmFormatException(path, name, $"holds a value of magnitude {max:G3}, beyond the {MaxMagnitude:G0} a training run with finite losses writes");
    }

    // A small file's bytes, refusing more than `max` (a link to a device or an endless file must not fill the memory).
    private static byte[] ReadBounded(string path, int max)
    {
        if (!File.Exists(path)) throw new MblmFormatException(path, null, "is missing from the checkpoint");
        using var stream = File.OpenRead(path);
        var buffer = new byte[max + 1];
        int total = 0, n;
        while (total < buffer.Length && (n = stream.Read(buffer, total, buffer.Length - total)) > 0) total += n;
        if (total > max) throw new MblmFormatException(path, null, $"is larger than the {Limits.FormatBytes(max)} such a file can hold");
        return buffer[..total];
    }

    private static long Integer(JsonObject meta, string key, string path)
    {
        if (meta[key] is JsonValue v && v.TryGetValue(out long x)) return x;
        if (meta[key] is JsonValue d && d.TryGetValue(out double y) && y == Math.Floor(y) && Math.Abs(y) < 1e18) return (long)y;
        throw new MblmFormatException(path, key, "must be an integer");
    }

    private static JsonObject Describe(string path)
    {
        using var stream = File.OpenRead(path);
        return new JsonObject { ["bytes"] = stream.Length, ["sha256"] = Convert.ToHexStringLower(SHA256.HashData(stream)) };
    }

    private static void Verify(string path, JsonNode? expected, string trainerPath)
    {
        string name = Path.GetFileName(path);
        if (expected is not JsonObject e || e["bytes"] is not JsonValue b || !b.TryGetValue(out long bytes) || e["sha256"] is not JsonValue h || !h.TryGetValue(out string? sha))
            throw new MblmFormatException(trainerPath, "files." + name, "must hold the file's bytes and sha256");
        if (!File.Exists(path)) throw new MblmFormatException(path, null, "is missing from the checkpoint");
        using var stream = File.OpenRead(path);
        if (stream.Length != bytes) throw new MblmFormatException(path, null, $"has {stream.Length} bytes, the checkpoint recorded {bytes} (truncated?)");
        if (!string.Equals(Convert.ToHexStringLower(SHA256.HashData(stream)), sha, StringComparison.OrdinalIgnoreCase))
            throw new MblmFormatException(path, null, "does not match the SHA-256 recorded in trainer.json (corrupt)");
    }
}

/// <summary>
/// The early-stopping record a checkpoint keeps (<c>trainer.json</c>'s <c>validation</c>): the best validation so far
/// (its step and value), how many validations since have not improved on it, the last validation's value, and whether
/// the run stopped early. A resume continues from it: a run that stopped early stays stopped (unless the patience is now
/// larger), and the best step's checkpoint supplies the weights to restore.
/// </summary>
internal readonly record struct ValidationRecord(long BestStep, double BestValue, int SinceBest, double? LastValue, bool StoppedEarly)
{
    public JsonObject ToJson() => new()
    {
        ["best_step"] = BestStep, ["best_value"] = BestValue, ["since_best"] = SinceBest,
        ["last_value"] = LastValue is double l && double.IsFinite(l) ? l : null, ["stopped_early"] = StoppedEarly,
    };

    // Null when absent; a record that is not what the trainer writes is damage.
    public static ValidationRecord? Read(JsonNode? node, long step, string path)
    {
        if (node is null) return null;
        MblmFormatException Bad(string why) => new(path, "validation", why);
        if (node is not JsonObject o) throw Bad("must be an object");
        if (o["best_step"] is not JsonValue bs || !bs.TryGetValue(out long bestStep) || bestStep < 0 || bestStep > step)
            throw Bad($"best_step must be an integer in [0, {step}] (the checkpoint's step)");
        if (o["best_value"] is not JsonValue bv || !bv.TryGetValue(out double bestValue) || !double.IsFinite(bestValue))
            throw Bad("best_value must be a finite number");
        if (o["since_best"] is not JsonValue sb || !sb.TryGetValue(out int sinceBest) || sinceBest < 0)
            throw Bad("since_best must be a non-negative integer");
        double? last = null;
        if (o["last_value"] is JsonValue lv)
            last = lv.TryGetValue(out double l) && double.IsFinite(l) ? l : throw Bad("last_value must be a finite number or null");
        if (o["stopped_early"] is not JsonValue se || !se.TryGetValue(out bool stopped)) throw Bad("stopped_early must be true or false");
        return new ValidationRecord(bestStep, bestValue, sinceBest, last, stopped);
    }
}
