using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mblm.Cli;
using Mblm.Config;
using Mblm.Generation;
using Mblm.Weights;
using Microsoft.ML;
using static Mblm.Tests.TestData;

namespace Mblm.Tests;

/// <summary>
/// The <c>mblm</c> tool on bad input: one line on stderr, never a stack trace; exit code 1 for usage errors, 2 for invalid
/// files or data, 3 for internal errors; paths checked before any work; no NaN in printed JSON.
/// </summary>
[TestClass]
public sealed class CliHardeningTests
{
    private static string _dir = "";
    private static string _config = "", _weights = "", _otherWeights = "", _input = "", _text = "";

    [ClassInitialize]
    public static void MakeFixtures(TestContext _)
    {
        _dir = Path.Combine(Path.GetTempPath(), $"mblm-cli-hardening-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_dir);
        var config = Cfg([16, 8], [4, 4], [S(), T()]);
        _config = Write("config.json", ConfigWriter.ToJson(config));
        _weights = Path.Combine(_dir, "weights.safetensors");
        ModelWeights.Save(RandomModel(config, 1), _weights);
        _otherWeights = Path.Combine(_dir, "other.safetensors");
        ModelWeights.Save(RandomModel(Cfg([24, 8], [4, 4], [S(), T()]), 1), _otherWeights);
        _input = Write("input.json", """{"ids": [[104, 105, 33, 10]], "loss_mask": null}""");
        _text = Write("text.txt", "the quick brown fox jumps over the lazy dog. " + new string('x', 100));
    }

    [ClassCleanup]
    public static void RemoveFixtures()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, true);
    }

    private static string Write(string name, string content)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, content);
        return path;
    }

    private static string WriteBytes(string name, byte[] content)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, content);
        return path;
    }

    // Runs the tool and checks the failure contract: the code, one line on stderr containing `message`, no trace.
    private static (string Out, string Err) Fails(int code, string message, params string[] args)
    {
        var (actual, stdout, stderr) = CliTests.Mblm(args);
        string err = stderr.TrimEnd();
        Assert.AreEqual(code, actual, $"exit code of mblm {string.Join(' ', args)}\nstderr: {err}");
        string last = err.Split('\n')[^1];
        StringAssert.Contains(last, message, $"stderr: {err}");
        Assert.IsFalse(last.Contains('\r'), "one line");
        Assert.IsFalse(err.Contains("   at ", StringComparison.Ordinal), $"no stack trace without --debug: {err}");
        return (stdout, err);
    }

    private static string[] Generate(params string[] more) =>
        ["generate", "--config", _config, "--weights", _weights, "--prompt", "hi", .. more];

    [TestMethod]
    public void NoArguments_UnknownCommand_UnknownFlag_AreUsageErrors_HelpIsNot()
    {
        Assert.AreEqual(ExitCodes.Usage, CliTests.Mblm().Code);
        Fails(1, "unknown command 'frobnicate'", "frobnicate");
        Fails(1, "'info' does not take --bogus", "info", "--config", _config, "--bogus", "1");
        Fails(1, "unexpected argument 'stray'", "info", "stray");
        var (code, output, _) = CliTests.Mblm("--help");
        Assert.AreEqual(0, code);
        StringAssert.Contains(output, "Exit codes: 0 success; 1 usage error");
        StringAssert.Contains(output, "--debug");
        Assert.AreEqual(0, CliTests.Mblm("train", "--help").Code);
    }

    [TestMethod]
    [DataRow("--max-bytes", "99999999999999999999", "--max-bytes must be an integer in [0, 2147483647], got 99999999999999999999")]
    [DataRow("--max-bytes", "3000000000", "--max-bytes must be an integer in [0, 2147483647], got 3000000000")]
    [DataRow("--max-bytes", "-1", "--max-bytes must be an integer in [0, 2147483647], got -1")]
    [DataRow("--top-k", "99999999999", "--top-k must be an integer in [1, 2147483647], got 99999999999")]
    [DataRow("--top-k", "0", "--top-k must be an integer in [1, 2147483647], got 0")]
    [DataRow("--top-p", "NaN", "--top-p must be a number in (0, 1], got 'NaN'")]
    [DataRow("--top-p", "1.5", "--top-p must be a number in (0, 1], got '1.5'")]
    [DataRow("--seed", "1e5", "--seed must be an integer in [-9223372036854775808, 9223372036854775807], got '1e5'")]
    [DataRow("--stop-ids", "a,b", "--stop-ids must be a comma-separated list of non-negative integer token ids")]
    [DataRow("--stop-ids", "1.5", "'1.5' is not one")]
    [DataRow("--stop-ids", "10,,11", "'' is not one")]
    [DataRow("--stop-ids", "99999999999999999999", "--stop-ids must be a comma-separated list")]
    [DataRow("--stop-ids", "300", "--stop-ids: id 300 is outside [0, num_tokens) = [0, 257)")]
    [DataRow("--temperature", "1e-300", "--temperature must be 0 (greedy) or a number in [0.0001, 10000], got '1e-300'")]
    [DataRow("--temperature", "-1", "--temperature must be 0 (greedy) or a number in [0.0001, 10000], got '-1'")]
    [DataRow("--temperature", "NaN", "--temperature must be 0 (greedy) or a number in [0.0001, 10000], got 'NaN'")]
    [DataRow("--temperature", "Infinity", "--temperature must be 0 (greedy) or a number in [0.0001, 10000], got 'Infinity'")]
    [DataRow("--temperature", "1e400", "--temperature must be 0 (greedy) or a number in [0.0001, 10000], got '1e400'")]
    public void Generate_BadFlagValues_AreUsageErrorsNamingTheFlagAndRange(string flag, string value, string message)
    {
        string[] args = flag == "--max-bytes" ? Generate(flag, value) : Generate("--max-bytes", "4", flag, value);
        Fails(1, message, args);
    }

    [TestMethod]
    public void Temperature_CliAndLibraryApplyTheSameRule()
    {
        foreach (double t in new[] { 1e-300, 1e-5, -1, double.NaN, double.PositiveInfinity, 1e5 })
        {
            Assert.IsFalse(SamplingOptions.IsValidTemperature(t), t.ToString());
            Assert.ThrowsExactly<ArgumentException>(() => new SamplingOptions { Temperature = t }.Validate(), t.ToString());
        }
        foreach (double t in new[] { 0, SamplingOptions.MinTemperature, 0.7, 1, SamplingOptions.MaxTemperature })
        {
            Assert.IsTrue(SamplingOptions.IsValidTemperature(t));
            new SamplingOptions { Temperature = t }.Validate();
        }
        var (code, _, err) = CliTests.Mblm(Generate("--max-bytes", "3", "--temperature", "0.0001", "--seed", "1"));
        Assert.AreEqual(0, code, err);
        StringAssert.Contains(err, "mblm generate: 3 tokens");
    }

    [TestMethod]
    [DataRow("eval", "--batch", "99999999999", "--batch must be an integer in [1, 2147483647], got 99999999999")]
    [DataRow("eval", "--window", "99999999999", "--window must be an integer in [1, 2147483647], got 99999999999")]
    [DataRow("eval", "--window", "0", "--window must be an integer in [1, 2147483647], got 0")]
    [DataRow("eval", "--batch", "two", "--batch must be an integer in [1, 2147483647], got 'two'")]
    [DataRow("train", "--batch", "99999999999", "--batch must be an integer in [1, 2147483647], got 99999999999")]
    [DataRow("train", "--window", "99999999999", "--window must be an integer in [1, 2147483647], got 99999999999")]
    [DataRow("train", "--steps", "99999999999999999999", "--steps must be an integer in [1, 9223372036854775807], got 99999999999999999999")]
    [DataRow("train", "--grad-accum", "0", "--grad-accum must be an integer in [1, 2147483647], got 0")]
    [DataRow("train", "--lr", "-1", "--lr must be a finite number > 0, got '-1'")]
    [DataRow("train", "--lr", "Infinity", "--lr must be a finite number > 0, got 'Infinity'")]
    [DataRow("train", "--clip", "NaN", "--clip must be a finite number > 0, got 'NaN'")]
    [DataRow("train", "--val-fraction", "1", "--val-fraction must be a number in (0, 1), got '1'")]
    [DataRow("train", "--checkpoint-every", "-1", "--checkpoint-every must be an integer in [0, 9223372036854775807], got -1")]
    public void EvalAndTrain_BadNumbers_AreUsageErrors(string command, string flag, string value, string message)
    {
        string outDir = Path.Combine(_dir, "never-" + Guid.NewGuid().ToString("N"));
        string[] args = command == "eval"
            ? ["eval", "--config", _config, "--weights", _weights, "--data", _text, flag, value]
            : ["train", "--config", _config, "--data", _text, "--steps", "1", "--out", outDir, flag, value];
        if (flag == "--steps") args = ["train", "--config", _config, "--data", _text, "--out", outDir, flag, value];
        Fails(1, message, args);
        Assert.IsFalse(Directory.Exists(outDir), "nothing was written");
    }

    [TestMethod]
    public void OutputPaths_AreCheckedBeforeAnyWork()
    {
        string aFile = Write("a-file.txt", "x");
        // forward --logits-out: a directory, a path under a file, a place nobody can create files in.
        var (stdout, err) = Fails(2, $"--logits-out '{_dir}' is a directory; give a file name",
            "forward", "--config", _config, "--weights", _weights, "--input", _input, "--logits-out", _dir);
        Assert.AreEqual("", stdout, "no loss was computed or printed");
        Assert.IsFalse(err.Contains("ids on"), "the forward pass never started");
        Fails(2, $"'{aFile}' is a file, not a directory",
            "forward", "--config", _config, "--weights", _weights, "--input", _input, "--logits-out", Path.Combine(aFile, "logits.bin"));
        if (Directory.Exists("/proc/self"))
            Fails(2, "--logits-out '/proc/logits.bin' cannot be written",
                "forward", "--config", _config, "--weights", _weights, "--input", _input, "--logits-out", "/proc/logits.bin");

        // generate --ids-out: checked before generating (nothing on stdout).
        (stdout, _) = Fails(2, $"--ids-out '{_dir}' is a directory", Generate("--max-bytes", "5", "--ids-out", _dir));
        Assert.AreEqual("", stdout);

        // train --out: a file.
        (stdout, err) = Fails(2, $"--out '{aFile}' is a file, not a directory",
            "train", "--config", _config, "--data", _text, "--steps", "1", "--out", aFile);
        Assert.IsFalse(err.Contains("parameters,"), "training never started");
        Fails(2, "cannot be written", "train", "--config", _config, "--data", _text, "--steps", "1", "--out", Path.Combine(aFile, "run"));

        // Writes that do happen are atomic and leave no temporary files.
        string ids = Path.Combine(_dir, "new", "ids.json");
        var (code, _, e) = CliTests.Mblm(Generate("--max-bytes", "3", "--temperature", "0", "--ids-out", ids));
        Assert.AreEqual(0, code, e);
        Assert.AreEqual(3, JsonSerializer.Deserialize<long[]>(File.ReadAllText(ids))!.Length);
        Assert.AreEqual(1, Directory.GetFiles(Path.GetDirectoryName(ids)!).Length);
    }

    [TestMethod]
    public void InputPaths_DirectoriesAndMissingFiles_AreInvalidFiles()
    {
        Fails(2, $"--prompt-file '{_dir}' is a directory, not a file",
            "generate", "--config", _config, "--weights", _weights, "--prompt-file", _dir, "--max-bytes", "1");
        Fails(2, $"--config '{_dir}' is a directory, not a file", "info", "--config", _dir);
        Fails(2, "--data '/nonexistent/data.bin' does not exist", "eval", "--config", _config, "--weights", _weights, "--data", "/nonexistent/data.bin");
        Fails(2, "--weights '/nonexistent/w.safetensors' does not exist",
            "forward", "--config", _config, "--weights", "/nonexistent/w.safetensors", "--input", _input);
    }

    [TestMethod]
    public void Generate_PromptFile_IsReadAsRawBytes()
    {
        // UTF-16 with a BOM: 9 bytes, which a text reader would turn into 4 characters (8 UTF-8 bytes).
        string utf16 = WriteBytes("utf16.txt", [0xFF, 0xFE, (byte)'h', 0, (byte)'i', 0, (byte)'!', 0, (byte)'\n']);
        var (code, _, err) = CliTests.Mblm("generate", "--config", _config, "--weights", _weights, "--prompt-file", utf16, "--max-bytes", "0");
        Assert.AreEqual(0, code, err);
        StringAssert.Contains(err, "prompt 9 tokens");
        // Invalid UTF-8 stays as it is (a decoder would grow 0xC3 into U+FFFD, 3 bytes).
        string invalid = WriteBytes("invalid.txt", [0xC3, 0x28]);
        (code, _, err) = CliTests.Mblm("generate", "--config", _config, "--weights", _weights, "--prompt-file", invalid, "--max-bytes", "0");
        Assert.AreEqual(0, code, err);
        StringAssert.Contains(err, "prompt 2 tokens");
    }

    [TestMethod]
    public void Eval_OnEmptyData_FailsInsteadOfPrintingAPerfectScore()
    {
        string empty = WriteBytes("empty.bin", []);
        var (stdout, _) = Fails(2, $"--data '{empty}' is empty: no bytes to evaluate", "eval", "--config", _config, "--weights", _weights, "--data", empty);
        Assert.AreEqual("", stdout, "no JSON (and no NaN) printed");
        var (code, output, err) = CliTests.Mblm("eval", "--config", _config, "--weights", _weights, "--data", _text);
        Assert.AreEqual(0, code, err);
        using var json = JsonDocument.Parse(output.Trim().Split('\n')[^1]);
        Assert.IsTrue(json.RootElement.GetProperty("bits_per_byte").GetDouble() > 0);
    }

    [TestMethod]
    [DataRow("""{"ids": [[104, 105, 33, 10]], "loss_mask": [[1e39, 1, 1, 1]]}""", "loss_mask[0][0] = 1e39 must be a finite number >= 0 that fits a float32")]
    [DataRow("""{"ids": [[104, 105, 33, 10]], "loss_mask": [[1, -0.5, 1, 1]]}""", "loss_mask[0][1] = -0.5 must be a finite number >= 0")]
    [DataRow("""{"ids": [[104, 105, 33, 10]], "loss_mask": "all"}""", "\"loss_mask\" must be a list of rows of numbers, or null; got a string \"all\"")]
    [DataRow("""{"ids": [[104, 105, 33, 10]], "loss_mask": [[1, "1", 1, 1]]}""", "loss_mask[0][1] must be a number, got a string \"1\"")]
    [DataRow("""{"ids": [[104, 105, 33, 10]], "loss_mask": [[1, 1]]}""", "\"loss_mask\" must have the shape of \"ids\" (1 x 4)")]
    [DataRow("""{"ids": [[104, 2.5, 33, 10]]}""", "ids[0][1] must be an integer token id, got 2.5")]
    [DataRow("""{"ids": [[104, 1e30]]}""", "ids[0][1] must be an integer token id, got 1e30")]
    [DataRow("""{"ids": [[104, 300]]}""", "ids[0][1] = 300 is outside [0, num_tokens) = [0, 257)")]
    [DataRow("""{"ids": [104, 105]}""", "ids[0] must be a list, got 104")]
    [DataRow("""{"ids": [[1, 2], [3]]}""", "every row of \"ids\" must have the same, non-zero length")]
    [DataRow("""[1, 2]""", "must be a JSON object")]
    [DataRow("""{"ids": [[1, 2""", "is not valid JSON")]
    public void Forward_InvalidInput_IsAnInvalidFile_AndNeverPrintsNaN(string json, string message)
    {
        string input = Write($"input-{Guid.NewGuid():N}.json", json);
        var (stdout, _) = Fails(2, message, "forward", "--config", _config, "--weights", _weights, "--input", input);
        Assert.AreEqual("", stdout);
    }

    [TestMethod]
    public void Forward_ValidMask_PrintsAFiniteLoss_AndAnOverflowPrintsNull()
    {
        string input = Write("masked.json", """{"ids": [[104, 105, 33, 10]], "loss_mask": [[0, 1, 0.5, 2]]}""");
        var (code, output, err) = CliTests.Mblm("forward", "--config", _config, "--weights", _weights, "--input", input);
        Assert.AreEqual(0, code, err);
        using (var json = JsonDocument.Parse(output.Trim().Split('\n')[^1]))
            Assert.IsTrue(double.IsFinite(json.RootElement.GetProperty("loss").GetDouble()));

        // Weights that fit float32 but whose weighted sum overflows: the loss is infinite, printed as null (valid JSON) with a warning.
        input = Write("huge-mask.json", """{"ids": [[104, 105, 33, 10]], "loss_mask": [[0, 1, 0.5, 3.4e38]]}""");
        (code, output, err) = CliTests.Mblm("forward", "--config", _config, "--weights", _weights, "--input", input);
        Assert.AreEqual(0, code, err);
        StringAssert.Contains(err, "warning: the loss is not finite");
        using (var json = JsonDocument.Parse(output.Trim().Split('\n')[^1]))
            Assert.AreEqual(JsonValueKind.Null, json.RootElement.GetProperty("loss").ValueKind);
    }

    [TestMethod]
    public void DamagedOrForeignWeights_AreInvalidFiles_OnOneLine()
    {
        var bytes = File.ReadAllBytes(_weights);
        string truncated = WriteBytes("truncated.safetensors", bytes[..(bytes.Length / 2)]);
        Fails(2, $"'{truncated}'", "forward", "--config", _config, "--weights", truncated, "--input", _input);
        string garbage = WriteBytes("garbage.safetensors", Encoding.ASCII.GetBytes("not a safetensors file at all"));
        Fails(2, $"'{garbage}'", "forward", "--config", _config, "--weights", garbage, "--input", _input);
        // A mismatch lists every problem: on one line.
        Fails(2, "do not match the model", "forward", "--config", _config, "--weights", _otherWeights, "--input", _input);
        string badConfig = Write("bad-config.json", """{"num_tokens": -3}""");
        Fails(2, "bad-config.json", "info", "--config", badConfig);
    }

    [TestMethod]
    public void Train_ResumeIntoAForeignRun_IsRefusedNamingBothValues()
    {
        string outDir = Path.Combine(_dir, "run-" + Guid.NewGuid().ToString("N"));
        string[] run = ["train", "--config", _config, "--data", _text, "--steps", "2", "--batch", "2", "--window", "16", "--out", outDir];
        var (code, _, err) = CliTests.Mblm(run);
        Assert.AreEqual(0, code, err);
        Fails(2, "trainer.learning_rate is 0.001 in the checkpoint, 0.002 in this run", [.. run, "--lr", "2e-3", "--resume"]);
        (code, _, err) = CliTests.Mblm([.. run, "--resume"]);
        Assert.AreEqual(0, code, err);
        StringAssert.Contains(err, "resumed from step 2");
    }

    [TestMethod]
    public void Predict_PipelineWithoutAnMblmStage_OrWithoutRows_Fails()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(new[] { new TextRow { Text = "Hello" } });
        var plain = ml.Transforms.Text.NormalizeText("Text").Fit(data);
        string plainZip = Path.Combine(_dir, "plain.zip");
        ml.Mblm().SaveModel(plain, data.Schema, plainZip);
        Fails(2, "holds no MBLM stage", "predict", "--model", plainZip, "--text", "Hello");

        // "stages": [] in the manifest: refused when the pipeline file is read (docs/pipeline-format.md).
        string emptyZip = Path.Combine(_dir, "empty-stages.zip");
        File.Copy(plainZip, emptyZip);
        using (var zip = ZipFile.Open(emptyZip, ZipArchiveMode.Update))
        {
            var entry = zip.GetEntry("mblm-pipeline.json")!;
            JsonObject manifest;
            using (var reader = new StreamReader(entry.Open())) manifest = JsonNode.Parse(reader.ReadToEnd())!.AsObject();
            manifest["stages"] = new JsonArray();
            entry.Delete();
            using var writer = new StreamWriter(zip.CreateEntry("mblm-pipeline.json").Open());
            writer.Write(manifest.ToJsonString());
        }
        Fails(2, "lists no stages: a pipeline file holds at least one stage", "predict", "--model", emptyZip, "--text", "Hello");

        string emptyRows = Write("no-rows.txt", "");
        Fails(2, "is empty: no rows to predict", "predict", "--model", plainZip, "--input-file", emptyRows);
        Fails(2, "not an MBLM pipeline file", "predict", "--model", _text, "--text", "Hello");
    }

    [TestMethod]
    public void Debug_PrintsTheFullException_OnEveryCommand()
    {
        var (code, _, err) = CliTests.Mblm("info", "--config", _dir, "--debug");
        Assert.AreEqual(2, code);
        StringAssert.Contains(err, "Mblm.Cli.InvalidInputException");
        StringAssert.Contains(err, "   at ");
        foreach (var command in new[] { "forward", "train", "eval", "generate", "predict", "export" })
        {
            (code, _, err) = CliTests.Mblm(command, "--debug");
            Assert.AreEqual(1, code, err);
            Assert.IsFalse(err.Contains("--debug"), $"{command} accepts --debug: {err}");
        }
        // info needs no flag: without --config it reports the libtorch in use.
        (code, var runtime, err) = CliTests.Mblm("info", "--debug");
        Assert.AreEqual(0, code, err);
        StringAssert.Contains(runtime, "libtorch: ");
        (code, var output, err) = CliTests.Mblm("info", "--config", _config, "--debug");
        Assert.AreEqual(0, code, err);
        StringAssert.Contains(output, "total:");
    }

    [TestMethod]
    public void UnexpectedExceptions_AreInternalErrors_WithExitCode3()
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Report(new NullReferenceException("boom\n  second line"), "eval", debug: false, stdout, stderr);
        Assert.AreEqual(ExitCodes.Internal, code);
        Assert.AreEqual("mblm eval: internal error: System.NullReferenceException: boom; second line (rerun with --debug for the full trace)", stderr.ToString().TrimEnd());

        stderr = new StringWriter();
        Exception thrown;
        try { throw new InvalidOperationException("kaboom"); }
        catch (InvalidOperationException e) { thrown = e; }
        code = Program.Report(thrown, "eval", debug: true, stdout, stderr);
        Assert.AreEqual(3, code);
        StringAssert.StartsWith(stderr.ToString(), "mblm eval: internal error: System.InvalidOperationException: kaboom\n");
        StringAssert.Contains(stderr.ToString(), "   at ");

        // The typed ones.
        Assert.AreEqual(1, Program.Report(new UsageException("x"), "c", false, stdout, new StringWriter()));
        foreach (var e in new Exception[]
                 {
                     new InvalidInputException("x"), new ConfigException("k", "rule"), new MblmFormatException("f", null, "bad"),
                     new FileNotFoundException("x"), new InvalidDataException("x"), new JsonException("x"), new UnauthorizedAccessException("x"),
                     new Training.CheckpointMismatchException("c", []),
                 })
            Assert.AreEqual(2, Program.Report(e, "c", false, stdout, new StringWriter()), e.GetType().Name);
    }

    [TestMethod]
    public void MemoryBudget_RefusesAModelThatNeedsMore_BeforeAllocating_AndHoldsForOneRunOnly()
    {
        long before = Limits.MemoryBudgetBytes;
        Fails(2, "memory budget of 1 KiB", "forward", "--config", _config, "--weights", _weights, "--input", _input, "--memory-budget", "1K");
        Assert.AreEqual(before, Limits.MemoryBudgetBytes, "the flag applies to its own run");
        Fails(1, "--memory-budget must be a size", "info", "--config", _config, "--memory-budget", "lots");
        var (code, _, err) = CliTests.Mblm(["forward", "--config", _config, "--weights", _weights, "--input", _input, "--memory-budget", "1G"]);
        Assert.AreEqual(0, code, err);
    }

    [TestMethod]
    public void Threads_SetsLibtorchThreadsForOneRun_AndRejectsBadCounts()
    {
        int before = TorchSharp.torch.get_num_threads();
        var (code, _, err) = CliTests.Mblm(["forward", "--config", _config, "--weights", _weights, "--input", _input, "--threads", "1"]);
        Assert.AreEqual(0, code, err);
        Assert.AreEqual(before, TorchSharp.torch.get_num_threads(), "the flag applies to its own run");
        Fails(1, "--threads must be an integer in [1, 1024]", "info", "--config", _config, "--threads", "0");
    }
}
