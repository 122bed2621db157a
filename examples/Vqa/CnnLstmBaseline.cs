using Mblm.Examples;
using Mblm.MLNet.Vision;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

/// <summary>
/// The classic VQA baseline (after Johnson et al. 2017's CNN+LSTM): a small CNN over the image, an LSTM over the question's
/// bytes, their features concatenated into an MLP with a classification head over the answers; trained with cross-entropy.
/// </summary>
internal sealed class CnnLstmBaseline : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    private readonly Sequential _cnn;
    private readonly Embedding _embed;
    private readonly LSTM _lstm;
    private readonly Sequential _head;

    public CnnLstmBaseline(int answers, int height, int width) : base("CnnLstm")
    {
        _cnn = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding: 1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding: 1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding: 1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * (height / 8) * (width / 8), 128), nn.ReLU());
        _embed = nn.Embedding(256, 32);
        _lstm = nn.LSTM(32, 64, batchFirst: true);
        _head = nn.Sequential(nn.Linear(128 + 64, 128), nn.ReLU(), nn.Linear(128, answers));
        RegisterComponents();
    }

    /// <summary>images (B, 3, H, W) in [0, 1]; questions (B, T) bytes, right-padded; lengths (B).</summary>
    public override Tensor forward(Tensor images, Tensor questions, Tensor lengths)
    {
        var image = _cnn.forward(images);
        var (output, _, _) = _lstm.forward(_embed.forward(questions));
        var last = output.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, output.size(2))).squeeze(1);
        return _head.forward(cat(new[] { image, last }, 1));
    }

    public static (Tensor Images, Tensor Questions, Tensor Lengths) Batch(IReadOnlyList<VqaExample> examples)
    {
        int h = examples[0].Image.Height, w = examples[0].Image.Width, t = examples.Max(e => e.Question.Length);
        var pixels = new float[examples.Count * 3 * h * w];
        var q = new long[examples.Count * t];
        var lengths = new long[examples.Count];
        for (int i = 0; i < examples.Count; i++)
        {
            var p = examples[i].Image.Planar;
            for (int j = 0; j < p.Length; j++) pixels[i * p.Length + j] = p[j] / 255f;
            var bytes = VqaLayout.Utf8(examples[i].Question);
            for (int j = 0; j < bytes.Length; j++) q[i * t + j] = bytes[j];
            lengths[i] = Math.Max(1, bytes.Length);
        }
        return (tensor(pixels, new long[] { examples.Count, 3, h, w }), tensor(q, new long[] { examples.Count, t }), tensor(lengths));
    }

    /// <summary>Trains a baseline and returns its predicted answers for the test examples.</summary>
    public static string[] TrainAndPredict(List<VqaExample> train, List<VqaExample> test, IReadOnlyList<string> answers, int epochs, int seed)
    {
        manual_seed(seed);
        var index = answers.Select((a, i) => (a, i)).ToDictionary(x => x.a, x => (long)x.i);
        using var model = new CnnLstmBaseline(answers.Count, train[0].Image.Height, train[0].Image.Width);
        var optimizer = optim.Adam(model.parameters(), lr: 2e-3);
        var rng = new Random(seed);
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            model.train();
            foreach (var batch in train.OrderBy(_ => rng.Next()).Chunk(32))
            {
                using var scope = NewDisposeScope();
                var (images, questions, lengths) = Batch(batch);
                var targets = tensor(batch.Select(e => index[e.Answer]).ToArray());
                optimizer.zero_grad();
                var loss = nn.functional.cross_entropy(model.forward(images, questions, lengths), targets);
                loss.backward();
                optimizer.step();
            }
        }
        model.eval();
        using var noGrad = no_grad();
        var predicted = new List<string>();
        foreach (var batch in test.Chunk(64))
        {
            using var scope = NewDisposeScope();
            var (images, questions, lengths) = Batch(batch);
            var best = model.forward(images, questions, lengths).argmax(1).data<long>().ToArray();
            predicted.AddRange(best.Select(b => answers[(int)b]));
        }
        return predicted.ToArray();
    }
}
