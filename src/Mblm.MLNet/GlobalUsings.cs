// The layer's folders are namespaces (namespaces follow folders); inside the layer every one is in scope (the tests
// compile this file too).
global using Mblm.MLNet.Classification;
global using Mblm.MLNet.DataView;
global using Mblm.MLNet.Experiments;
global using Mblm.MLNet.Hosting;
global using Mblm.MLNet.LanguageModel;
global using Mblm.MLNet.Persistence;
global using Mblm.MLNet.Text;
global using Mblm.MLNet.Vision;
