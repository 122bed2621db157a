// The ML.NET layer's namespaces (they follow its folders), in scope in every test.
global using Mblm.MLNet.DataView;
global using Mblm.MLNet.Experiments;
global using Mblm.MLNet.Hosting;
global using Mblm.MLNet.LanguageModel;
global using Mblm.MLNet.Persistence;
global using Mblm.MLNet.Text;
global using Mblm.MLNet.Vision;
