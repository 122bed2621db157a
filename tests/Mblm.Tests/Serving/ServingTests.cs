using System.Net.Http.Json;
using Mblm.Examples.Serving;
using Microsoft.ML;

namespace Mblm.Tests;

/// <summary>
/// The ASP.NET Core serving example (examples/Serving; its service and load test are compiled into the tests): a saved
/// pipeline served over HTTP gives the same scores as a local PredictionEngine, under concurrent clients too.
/// </summary>
[TestClass]
public sealed class ServingTests
{
    [TestMethod]
    public async Task ServedScores_EqualLocalPredictions_UnderConcurrentClients()
    {
        string path = MLNetTests.SaveTinyLanguageModel(MLNetTests.Tiny);
        try
        {
            var texts = MLNetTests.Corpus.Take(6).ToArray();
            var ml = new MLContext(seed: 1);
            float[] expected;
            using (var local = (IDisposable)ml.Mblm().LoadModel(path, out _))
            {
                using var engine = ml.Model.CreatePredictionEngine<TextInput, ScoreOutput>((ITransformer)local);
                expected = texts.Select(t => engine.Predict(new TextInput { Text = t }).BitsPerByte).ToArray();
            }

            var (app, service) = ScoringService.Build(path, "http://127.0.0.1:0");
            using (service)
            {
                await app.StartAsync();
                try
                {
                    using var http = new HttpClient { BaseAddress = new Uri(app.Urls.First()) };
                    // 4 clients at once, each scoring every text: every answer equals the local prediction.
                    var answers = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
                    {
                        var mine = new float[texts.Length];
                        for (int i = 0; i < texts.Length; i++)
                        {
                            using var response = await http.PostAsJsonAsync("/score", new ScoreRequest(texts[i]));
                            response.EnsureSuccessStatusCode();
                            mine[i] = (await response.Content.ReadFromJsonAsync<ScoreResponse>())!.BitsPerByte;
                        }
                        return mine;
                    })));
                    foreach (var a in answers)
                        for (int i = 0; i < texts.Length; i++) Assert.AreEqual(expected[i], a[i], 1e-5f, $"text {i}");

                    using var bad = await http.PostAsJsonAsync("/score", new { other = 1 });
                    Assert.AreEqual(System.Net.HttpStatusCode.BadRequest, bad.StatusCode, "a body without text");

                    var levels = await LoadTest.RunAsync(new Uri(app.Urls.First()), texts, [1, 2], TimeSpan.FromSeconds(0.5));
                    Assert.AreEqual(2, levels.Count);
                    foreach (var l in levels)
                    {
                        Assert.IsTrue(l.Requests > 0, $"{l.Clients} clients answered no request");
                        Assert.IsTrue(l.P50Ms > 0 && l.P99Ms >= l.P50Ms, $"latencies {l}");
                    }
                    StringAssert.Contains(LoadTest.Table(levels), "| 2 |");
                }
                finally
                {
                    await app.StopAsync();
                }
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}
