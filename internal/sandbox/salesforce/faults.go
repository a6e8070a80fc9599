package salesforce

type faultState struct{ seed uint64 }

func (f *faultState) init(seed uint64) { f.seed = seed }
